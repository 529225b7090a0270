"""feredge: facial-expression recognition from PyTorch training to TensorRT on NVIDIA GPUs.

Importing the package stays cheap: nothing heavy (torch, tensorrt, cuda) is imported here.
"""

__version__ = "0.1.0"
