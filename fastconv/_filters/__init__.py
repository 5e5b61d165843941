"""Private machinery shared by the SciPy-compatible faces ``fastconv.signal`` and
``fastconv.ndimage``: both reduce every call to one operation, a correlation of an
N-D array with an N-D kernel over an input extended at its borders by a boundary mode,
and differ only in how they name its arguments and cast its result.

Modules, one role each:

- ``boundary``  where an index outside an axis reads from (the five modes), and blocks of the
                extended input built piece by piece, never as a padded copy of the whole array
- ``direct``    the direct engine: tiles of the output on fastconv's own kernels
                (``fastconv.depthwise_conv2d`` with ``backend=``), separable kernels as two
                1-D passes, and the exact NumPy paths that integer outputs need
- ``fft``       the FFT engine: overlap-save tiles of real FFTs (numpy.fft, or scipy.fft
                when installed), float32 kept in float32
- ``plan``      the operation itself (``correlate``), the cost model behind method='auto'
- ``casting``   SciPy's output dtypes and its float -> integer conversions
- ``threads``   the worker pool the engines share
- ``lazy_dask`` dask arrays in, dask arrays out (dask is imported only when one is passed)
- ``errors``    exception classes that are both SciPy's class and ValueError

A package rather than one module because these roles are ~1,500 lines together and each is
read on its own (the engines by someone speeding them up, the casting rules by someone
checking a dtype); private, because the public names are SciPy's, in the two faces.
"""
