"""Thread count of the BLAS under PyTorch/numpy, for equal-work comparisons.

`torch.set_num_threads(n)` sets PyTorch's own (OpenMP) threads only. Debian's python3-torch has no MKL
(`BLAS_INFO=generic`): its matmuls call the system libblas, on Debian OpenBLAS's pthread build, whose
own pool starts with one thread per core whatever torch was told. So a "1-thread" PyTorch multiplied
on every core (measured on a 2-core machine: openblas_get_num_threads() == 2 after
torch.set_num_threads(1)). `set_blas_threads(n)` sets that pool too, through OpenBLAS's C API
(openblas_set_num_threads), on every OpenBLAS library the process has loaded; it returns what
OpenBLAS reports afterwards, or None where no OpenBLAS is loaded (MKL, Accelerate: nothing done)."""
import ctypes


def set_blas_threads(n):
    seen, got = set(), None
    try:
        maps = open('/proc/self/maps').read().splitlines()
    except OSError:
        return None
    for line in maps:
        path = line.split()[-1] if len(line.split()) >= 6 else ''
        if 'openblas' not in path or path in seen:
            continue
        seen.add(path)
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_set_num_threads(int(n))
            got = lib.openblas_get_num_threads()
        except (OSError, AttributeError):
            pass
    return got
