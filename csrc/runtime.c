/* runtime.c: library-wide runtime entry points (version).
 *
 * Build: `pip install -e .` compiles every C file of csrc/ into fastconv._fastconv_c (see build_ffi.py).
 */
#include "fastconv.h"

int fc_abi_version(void) { return 1; }
