# The cffi kernel module is built from ext/kernels, the same C source the
# PostgreSQL extension compiles (see pyclient/pgsieve/_kernels_build.py).
from setuptools import setup

setup(cffi_modules=["pyclient/pgsieve/_kernels_build.py:ffibuilder"])
