"""Build hook: setuptools compiles the cffi extension described in csrc/build_ffi.py."""

from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"])
