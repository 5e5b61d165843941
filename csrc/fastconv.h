/* fastconv.h: the C API of fastconv, read verbatim by csrc/build_ffi.py as the cffi cdef.
 *
 * Only plain declarations go here (no macros, no includes): cffi parses this file.
 * Every array argument is C-contiguous; sizes and indices are int64_t.
 */

/* Version of this API; fastconv/backends/c.py checks it at import. */
int fc_abi_version(void);
