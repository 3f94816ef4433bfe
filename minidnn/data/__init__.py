"""Datasets: MNIST and CIFAR-10 readers of the standard files, ArrayDataset, minibatches, augmentation."""
from minidnn.data.arrays import dataset_from_arrays
from minidnn.data.augment import AUGMENTS, crop_flip, draw_crop_flip, random_crop_flip, random_shift
from minidnn.data.batching import count_batches, iterate_minibatches
from minidnn.data.dataset import ArrayDataset
from minidnn.data.locate import data_root, load_cifar10, load_dataset, load_mnist

__all__ = ["ArrayDataset", "dataset_from_arrays", "load_dataset", "load_mnist", "load_cifar10", "data_root", "iterate_minibatches",
           "count_batches", "random_crop_flip", "crop_flip", "draw_crop_flip",
           "random_shift", "AUGMENTS"]
