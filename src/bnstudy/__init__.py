"""bnstudy: can BatchNorm alone serve as the nonlinearity of a neural network?"""

__version__ = "0.1.0"
