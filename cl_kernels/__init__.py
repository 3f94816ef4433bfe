"""The OpenCL sources (package data of minidnn, loaded by minidnn.backend.cl_programs)."""
if __name__ != "minidnn.cl_kernels":  # one import path for the kernels
    raise ImportError("the OpenCL kernels are the package minidnn.cl_kernels (setup.cfg maps "
                      "cl_kernels/ to it): import minidnn.cl_kernels, not cl_kernels")
