#!/usr/bin/env python3
"""Builds the extraction model `models/extract/extract_v1.onnx` (hand-designed fixed weights).

Nothing here is trained: every weight is a fixed, documented filter (box pyramid, central-difference
gradients, channel selectors, histogram bin centres), so the model is reproducible bit for bit and its
meaning is readable. It exists as an ONNX graph (not Rust code) so the dense per-pixel part can move to
an NPU later; tract runs it on the CPU today.

Input  `frames`   uint8 [2, 1, H, W]  previous and current luma frame; H and W multiples of 8.
Outputs (block grid: one block per 8x8 input pixels, Hb = H/8, Wb = W/8)
  `tensors`   f32 [1, 18, Hb, Wb]  Lucas-Kanade structure tensors of the frame pair at three pyramid
                                    levels (1/2, 1/4, 1/8 size): for each level, block means of
                                    Ix*Ix, Ix*Iy, Iy*Iy, Ix*It, Iy*It, It*It over each 8x8-input-pixel
                                    block, on contrast-normalised frames.
  `evidence`  f32 [1, 7]           per-frame scalars: mean |diff| (1/2 size), luma-histogram distance
                                    (16 bins, 1/4 size), coarse structure change (1 - NCC at 1/8),
                                    luma mean of prev and cur, luma standard deviation of prev and cur.
  `thumb`     f32 [1, 1, Hb, Wb]   the current frame at 1/8 size (0..1), for gradual transitions.
The 3x3-block windows, the per-block 2x2 solves, the coarse-to-fine choice and the trust gating (a few operations per
block) are done by the extractor in Rust (firmware/src/extract/model.rs): as ONNX they were
~150 tiny nodes whose per-node overhead cost more than all the pixel work.

Quantisation: the full-resolution stage (the only one that touches every input pixel) is an integer
`ConvInteger` on the uint8 frames with uint8 weights, accumulating in int32; everything after it works
on 4x to 64x fewer values in float.

Usage: build_model.py OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Pyramid levels used for Lucas-Kanade: 1 = half size, 2 = quarter, 3 = eighth.
LEVELS = (1, 2, 3)
# Block size on the input grid (the flow map's resolution): 8 input pixels = one pixel at level 3.
BLOCK = 8
# Histogram: 16 triangular bins over luma 0..1 (a partition of unity inside the range).
HIST_BINS = 16
# Contrast normalisation target and floor (luma 0..1): 0.2 is a typical frame's standard deviation, so
# the Rust-side constants (REG, NOISE_TT) keep their meaning; the floor stops a near-flat frame's noise being blown up.
NORM_STD = 0.2
CONTRAST_FLOOR = 0.05

class G:
    """A tiny graph builder: named nodes, constants as initializers."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, arr, base="c"):
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def f(self, v):
        return self.const(np.array(v, dtype=np.float32), "f")

    def op(self, op_type, inputs, base=None, outputs=None, **attrs):
        out = outputs or [self.name(base or op_type.lower())]
        self.nodes.append(helper.make_node(op_type, inputs, out, **attrs))
        return out[0] if len(out) == 1 else out

    def slice_c(self, x, c0, c1):
        """Channels c0..c1 of an NCHW tensor."""
        return self.op(
            "Slice",
            [x, self.const(np.array([c0], np.int64)), self.const(np.array([c1], np.int64)),
             self.const(np.array([1], np.int64))],
            "slice",
        )


def gradient_kernel():
    """Conv weights [3, 2, 3, 3] mapping (prev, cur) to (Ix, Iy, It).

    Ix, Iy: central differences of the mean of the two frames, smoothed across (Sobel-like 1-2-1)
    so the gradient matches the box-filtered pyramid; It: cur - prev at the centre tap.
    """
    d = np.array([-0.5, 0.0, 0.5], np.float32)
    s = np.array([0.25, 0.5, 0.25], np.float32)
    kx = np.outer(s, d)  # rows smooth, columns differentiate
    ky = np.outer(d, s)
    w = np.zeros((3, 2, 3, 3), np.float32)
    for c in range(2):
        w[0, c] = 0.5 * kx
        w[1, c] = 0.5 * ky
    w[2, 0, 1, 1] = -1.0
    w[2, 1, 1, 1] = 1.0
    return w


def selectors():
    """1x1 convs picking factor pairs: products Ix*Ix, Ix*Iy, Iy*Iy, Ix*It, Iy*It, It*It."""
    pairs = [(0, 0), (0, 1), (1, 1), (0, 2), (1, 2), (2, 2)]
    a = np.zeros((6, 3, 1, 1), np.float32)
    b = np.zeros((6, 3, 1, 1), np.float32)
    for k, (i, j) in enumerate(pairs):
        a[k, i] = 1.0
        b[k, j] = 1.0
    return a, b


def structure_tensor(g, pair, pool):
    """Window-averaged Lucas-Kanade structure tensor at one level. `pair` is [1, 2, h, w] (prev, cur).

    Returns [1, 6, Hb, Wb]: block means (8x8 input pixels) of Ix*Ix, Ix*Iy, Iy*Iy, Ix*It, Iy*It,
    It*It. The 3x3-block window sum (24x24 input pixels), the 2x2 solve per block, the
    coarse-to-fine choice and the gating are cheap per-block arithmetic done by the extractor in Rust
    (firmware/src/extract/model.rs), which keeps this graph small for tract.
    """
    grads = g.op("Conv", [pair, g.const(gradient_kernel(), "wgrad")], "grads", pads=[1, 1, 1, 1])
    sa, sb = selectors()
    pa = g.op("Conv", [grads, g.const(sa, "sela")], "pa")
    pb = g.op("Conv", [grads, g.const(sb, "selb")], "pb")
    prod = g.op("Mul", [pa, pb], "prod")
    if pool > 1:
        prod = g.op("AveragePool", [prod], "blk", kernel_shape=[pool, pool], strides=[pool, pool])
    return prod


def build():
    g = G()
    frames = "frames"
    # Level 1 from the uint8 frames: integer 2x2 box sum (uint8 x uint8 -> int32), scaled to 0..1.
    s1 = g.op("ConvInteger", [frames, g.const(np.ones((1, 1, 2, 2), np.uint8), "ones")], "sum1",
              strides=[2, 2])
    l1 = g.op("Mul", [g.op("Cast", [s1], "s1f", to=TensorProto.FLOAT), g.f(1.0 / (4 * 255))], "l1")
    l2 = g.op("AveragePool", [l1], "l2", kernel_shape=[2, 2], strides=[2, 2])
    l3 = g.op("AveragePool", [l2], "l3", kernel_shape=[2, 2], strides=[2, 2])
    shape_pair = g.const(np.array([1, 2, 0, 0], np.int64), "shape")  # batch of 2 -> channels
    # Motion is estimated on contrast-normalised frames: each frame's luma minus its mean, scaled to a
    # standard deviation of NORM_STD (floored at CONTRAST_FLOOR), so a fade or an exposure change (the
    # whole frame scaled or shifted) is not mistaken for motion.
    axes = g.const(np.array([1, 2, 3], np.int64))
    m1 = g.op("ReduceMean", [l1, axes], keepdims=1)
    d1 = g.op("Sub", [l1, m1])
    sd1 = g.op("Sqrt", [g.op("ReduceMean", [g.op("Mul", [d1, d1]), axes], keepdims=1)])
    n1 = g.op("Mul", [d1, g.op("Div", [g.f(NORM_STD), g.op("Add", [sd1, g.f(CONTRAST_FLOOR)])])], "n1")
    n2 = g.op("AveragePool", [n1], "n2", kernel_shape=[2, 2], strides=[2, 2])
    n3 = g.op("AveragePool", [n2], "n3", kernel_shape=[2, 2], strides=[2, 2])
    levels = {1: n1, 2: n2, 3: n3}
    wins = []
    for lv in LEVELS:
        pair = g.op("Reshape", [levels[lv], shape_pair], f"pair{lv}")
        wins.append(structure_tensor(g, pair, BLOCK // (2 ** lv)))
    g.op("Concat", wins, outputs=["tensors"], axis=1)

    # ---- per-frame evidence ----
    pair1 = g.op("Reshape", [l1, shape_pair], "p1")
    prev1, cur1 = g.slice_c(pair1, 0, 1), g.slice_c(pair1, 1, 2)
    mad = g.op("ReduceMean", [g.op("Abs", [g.op("Sub", [cur1, prev1])])], "mad", keepdims=0)
    # Soft luma histograms of both frames at 1/4 size: bin k has centre (k+0.5)/16, triangular,
    # width 1/16 (a partition of unity).
    hw = g.const(np.full((HIST_BINS, 1, 1, 1), HIST_BINS, np.float32), "hw")
    hb = g.const(-(np.arange(HIST_BINS, dtype=np.float32) + 0.5), "hb")
    l2h = g.op("Conv", [l2, hw, hb], "hdist")  # [2, 16, h, w]: 16*x - centre
    memb = g.op("Relu", [g.op("Sub", [g.f(1.0), g.op("Abs", [l2h])])])
    hist = g.op("ReduceMean", [memb, g.const(np.array([2, 3], np.int64))], "hist", keepdims=0)  # [2,16]
    hp = g.op("Slice", [hist, g.const(np.array([0], np.int64)), g.const(np.array([1], np.int64)),
                        g.const(np.array([0], np.int64))])
    hc = g.op("Slice", [hist, g.const(np.array([1], np.int64)), g.const(np.array([2], np.int64)),
                        g.const(np.array([0], np.int64))])
    hdiff = g.op("Mul", [g.op("ReduceSum", [g.op("Abs", [g.op("Sub", [hc, hp])])], keepdims=0), g.f(0.5)])
    # Structure change at 1/8: 1 - normalised cross-correlation of the two coarse frames.
    pair3 = g.op("Reshape", [l3, shape_pair], "p3")
    ax = g.const(np.array([2, 3], np.int64))
    mean3 = g.op("ReduceMean", [pair3, ax], keepdims=1)
    z = g.op("Sub", [pair3, mean3])
    zp, zc = g.slice_c(z, 0, 1), g.slice_c(z, 1, 2)
    cov = g.op("ReduceMean", [g.op("Mul", [zp, zc]), ax], keepdims=0)
    vp = g.op("ReduceMean", [g.op("Mul", [zp, zp]), ax], keepdims=0)
    vc = g.op("ReduceMean", [g.op("Mul", [zc, zc]), ax], keepdims=0)
    # A flat frame (the bottom of a fade) has no structure to compare: reads as no change.
    ncc = g.op("Div", [cov, g.op("Sqrt", [g.op("Add", [g.op("Mul", [vp, vc]), g.f(1e-8)])])])
    flat = g.op("Less", [g.op("Mul", [vp, vc]), g.f(1e-8)])
    struct_change = g.op("Where", [flat, g.f(0.0), g.op("Sub", [g.f(1.0), ncc])])
    one = g.const(np.array([1, 1], np.int64))
    two = g.const(np.array([1, 2], np.int64))
    scalars = [g.op("Reshape", [x, one]) for x in (mad, hdiff, struct_change)]
    # Mean and standard deviation of both frames' luma (prev, cur): fades, flat-frame gating.
    g.op("Concat", scalars + [g.op("Reshape", [m1, two]), g.op("Reshape", [sd1, two])],
         outputs=["evidence"], axis=1)
    cur3 = g.slice_c(pair3, 1, 2)
    g.op("Identity", [cur3], outputs=["thumb"])

    inp = helper.make_tensor_value_info("frames", TensorProto.UINT8, [2, 1, "H", "W"])
    outs = [
        helper.make_tensor_value_info("tensors", TensorProto.FLOAT, [1, 6 * len(LEVELS), "Hb", "Wb"]),
        helper.make_tensor_value_info("evidence", TensorProto.FLOAT, [1, 7]),
        helper.make_tensor_value_info("thumb", TensorProto.FLOAT, [1, 1, "Hb", "Wb"]),
    ]
    graph = helper.make_graph(g.nodes, "undertone_extract_v1", [inp], outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="undertone tools/train/extract/build_model.py")
    model.ir_version = 8
    model.doc_string = __doc__
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "models/extract/extract_v1.onnx"
    m = build()
    onnx.save(m, out)
    print(f"wrote {out}: {len(m.graph.node)} nodes")
