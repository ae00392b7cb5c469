"""Demo data: robomimic-layout HDF5 writing and loading, mp4 video in and out."""
from embodied.datasets.demos import DemoDataset, demo_names, open_demo_file
from embodied.datasets.hdf5 import DemoWriter
from embodied.datasets.video import read_video, write_video

__all__ = ["DemoDataset", "DemoWriter", "demo_names", "open_demo_file", "read_video", "write_video"]
