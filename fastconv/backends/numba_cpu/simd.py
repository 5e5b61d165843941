"""Explicit SIMD vectors for Numba kernels: a vector type and its intrinsics.

Numba has no vector type, and LLVM keeps a GEMM micro-kernel's accumulators in registers only
when it can prove they do not alias the arrays being read, which it cannot for Numba arrays:
a plain-loop micro-kernel reloads and stores its accumulators on every multiply-add and stays
store-bound (``v2_im2col`` in gemm.py). These intrinsics emit LLVM vector values
directly, so a kernel can hold a 6 x 2-vector tile of C in registers the way a BLIS
micro-kernel written in C intrinsics does.

A vector is 64 bytes wide (16 float32 or 8 float64: one AVX-512 register; LLVM splits it into
two AVX2 registers, or four SSE ones, on machines without AVX-512, so the code stays portable).

Preconditions (not checked, as for any pointer arithmetic): every ``vload`` / ``vstore`` at
offset ``i`` of a C-contiguous array ``a`` needs ``0 <= i`` and ``i + vwidth(a) <= a.size``.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

VECTOR_BYTES = 64


class Vec(types.Type):
    """An LLVM vector of ``width`` elements of ``dtype`` (a Numba float type)."""

    def __init__(self, dtype, width):
        self.dtype = dtype
        self.width = width
        super().__init__(name=f"Vec({dtype} x {width})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        elem = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(elem, fe_type.width))


def _vec_of(arr) -> Vec:
    return Vec(arr.dtype, VECTOR_BYTES // (arr.dtype.bitwidth // 8))


def _splat(builder, value, vty):
    """A vector of type ``vty`` with every element equal to the scalar ``value``."""
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(i32, 0))
    zeros = ir.Constant(ir.VectorType(i32, vty.count), [0] * vty.count)
    return builder.shuffle_vector(one, one, zeros)


def _element_ptr(context, builder, arrty, arr, i):
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [i])


@intrinsic
def vwidth(typingctx, arr):
    """Number of elements of ``arr``'s dtype in one vector (a compile-time constant)."""
    width = _vec_of(arr).width

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(types.intp), width)

    return types.intp(arr), codegen


@intrinsic
def vzero(typingctx, arr):
    """A vector of zeros of ``arr``'s dtype."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), None)

    return vt(arr), codegen


@intrinsic
def vload(typingctx, arr, i):
    """The vector arr.flat[i : i + vwidth(arr)] (unaligned load)."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        vptr = builder.bitcast(ptr, context.get_value_type(vt).as_pointer())
        return builder.load(vptr, align=1)

    return vt(arr, types.intp), codegen


@intrinsic
def vstore(typingctx, arr, i, v):
    """arr.flat[i : i + vwidth(arr)] = v (unaligned store)."""

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        vptr = builder.bitcast(ptr, context.get_value_type(sig.args[2]).as_pointer())
        builder.store(args[2], vptr, align=1)
        return context.get_dummy_value()

    return types.none(arr, types.intp, v), codegen


@intrinsic
def vbroadcast(typingctx, arr, i):
    """A vector with every element equal to arr.flat[i]."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        scalar = builder.load(_element_ptr(context, builder, sig.args[0], args[0], args[1]))
        return _splat(builder, scalar, context.get_value_type(vt))

    return vt(arr, types.intp), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c, element-wise, with a single rounding (llvm.fma)."""

    def codegen(context, builder, sig, args):
        vty = args[0].type
        suffix = "f32" if vty.element == ir.FloatType() else "f64"
        fnty = ir.FunctionType(vty, [vty, vty, vty])
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.fma.v{vty.count}{suffix}")
        return builder.call(fn, args)

    return c(a, b, c), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b, element-wise."""

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return a(a, b), codegen


@intrinsic
def vpairs(typingctx, a, b):
    """The sums of adjacent pairs of the 2w elements of a then b (w = the vector width):
    element j is c[2j] + c[2j + 1] of c = a ++ b. When a and b hold partial sums of planes
    in runs of r elements, the result holds those of a then b in runs of r/2: log2(w) levels
    of this turn w vectors, one per plane, into one vector of w plane sums (fewer shuffles
    than one horizontal reduction per plane)."""

    def codegen(context, builder, sig, args):
        w = args[0].type.count
        i32 = ir.IntType(32)
        even = ir.Constant(ir.VectorType(i32, w), list(range(0, 2 * w, 2)))
        odd = ir.Constant(ir.VectorType(i32, w), list(range(1, 2 * w, 2)))
        return builder.fadd(
            builder.shuffle_vector(args[0], args[1], even),
            builder.shuffle_vector(args[0], args[1], odd),
        )

    return a(a, b), codegen


@intrinsic
def vload_last(typingctx, arr, end, k):
    """The vector arr.flat[end - w : end] (w = the vector width) with all but its last ``k``
    elements set to zero: the ragged end of a row of at least w elements, without reading
    past it."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        w = vt.width
        start = builder.sub(args[1], ir.Constant(args[1].type, w))
        ptr = _element_ptr(context, builder, sig.args[0], args[0], start)
        vty = context.get_value_type(vt)
        v = builder.load(builder.bitcast(ptr, vty.as_pointer()), align=1)
        ity = args[2].type  # intp
        lanes = ir.Constant(ir.VectorType(ity, w), list(range(w)))
        first = _splat(builder, builder.sub(ir.Constant(ity, w), args[2]), ir.VectorType(ity, w))
        keep = builder.icmp_signed(">=", lanes, first)
        return builder.select(keep, v, ir.Constant(vty, None))

    return vt(arr, types.intp, types.intp), codegen


@intrinsic
def vdiv(typingctx, v, d):
    """v / d, element-wise, for a scalar d (converted to the element type first)."""

    def codegen(context, builder, sig, args):
        s = context.cast(builder, args[1], sig.args[1], sig.args[0].dtype)
        return builder.fdiv(args[0], _splat(builder, s, args[0].type))

    return v(v, d), codegen
