#!/usr/bin/env python3
"""Builds the extraction model `models/extract/extract_v2.onnx` (hand-designed fixed weights).

Nothing here is trained: every weight is a fixed, documented filter (box pyramid, central-difference
gradients, histogram bin centres), so the model is reproducible bit for bit and its meaning is
readable. It exists as an ONNX graph (not Rust code) so the dense per-pixel part can move to an NPU
later; tract runs it on the CPU today.

The model is recurrent over frames: it takes the current frame and what it computed for the previous
frame (the pyramid and its gradients, the luma histogram), and returns both the pair's results and
the current frame's per-frame maps for the next call. Every pixel of a frame is thus filtered once,
not twice (once as "current", once again as "previous"). For the first frame of a stream the caller
passes zero state and ignores the pair outputs.

Inputs (H, W multiples of 8; h1 = H/2, h2 = H/4, Hb = H/8, same for widths)
  `frame`       uint8 [1, 1, H, W]    the current luma frame
  `prev_l1`     f32 [1, 1, h1, w1]    previous frame at 1/2 size, 0..1         (output `l1` of the last call)
  `prev_f1`     f32 [1, 3, h1, w1]    previous frame's level maps at 1/2 size   (output `f1`)
  `prev_f2`     f32 [1, 3, h2, w2]    ... at 1/4 size                           (output `f2`)
  `prev_f3`     f32 [1, 3, Hb, Wb]    ... at 1/8 size                           (output `f3`)
  `prev_hist`   f32 [1, 16]           previous frame's soft luma histogram      (output `hist`)
  `prev_thumb`  f32 [1, 1, Hb, Wb]    previous frame at 1/8 size, 0..1          (output `thumb`)
Outputs
  `tensors`   f32 [1, 18, Hb, Wb]  Lucas-Kanade structure tensors of the pair at three pyramid levels
                                    (1/2, 1/4, 1/8 size): for each level, block means over each
                                    8x8-input-pixel block of Ix*Ix, Ix*Iy, Ix*It, Iy*Iy, Iy*It, It*It
                                    on contrast-normalised frames (Ix, Iy: gradients of the mean of
                                    the two frames; It: current minus previous).
  `evidence`  f32 [1, 5]           mean |diff| (1/2 size), luma-histogram distance (16 bins, 1/4
                                    size), coarse structure change (1 - NCC at 1/8 size), the current
                                    frame's luma mean and standard deviation.
  `thumb`     f32 [1, 1, Hb, Wb]   the current frame at 1/8 size (0..1): gradual transitions, and state.
  `l1`, `f1`, `f2`, `f3`, `hist`    the current frame's state for the next call. A level map holds
                                    (Gx/2, Gy/2, N): the smoothed central-difference gradients (halved)
                                    and the contrast-normalised luma N at that level.
The 3x3-block windows, the per-block 2x2 solves, the coarse-to-fine choice and the trust gating (a
few operations per block) are done by the extractor in Rust (firmware/src/extract/model.rs): as ONNX
they were ~150 tiny nodes whose per-node overhead cost more than all the pixel work.

Quantisation: the full-resolution stage (the only one that touches every input pixel) is an integer
`ConvInteger` on the uint8 frame with uint8 weights, accumulating in int32; everything after it works
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
# the Rust-side constants (REG, NOISE_TT) keep their meaning; the floor stops a near-flat frame's noise
# being blown up.
NORM_STD = 0.2
CONTRAST_FLOOR = 0.05
# Order of the six structure-tensor products per level: (first factor, second factor) over
# (Ix, Iy, It). Grouped by first factor so each group is one broadcast multiply.
PRODUCTS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


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

    def i64(self, v):
        return self.const(np.array(v, np.int64), "i")

    def op(self, op_type, inputs, base=None, outputs=None, **attrs):
        out = outputs or [self.name(base or op_type.lower())]
        self.nodes.append(helper.make_node(op_type, inputs, out, **attrs))
        return out[0] if len(out) == 1 else out

    def slice_c(self, x, c0, c1):
        """Channels c0..c1 of an NCHW tensor."""
        return self.op("Slice", [x, self.i64([c0]), self.i64([c1]), self.i64([1])], "slice")


def level_kernel():
    """Conv weights [3, 1, 3, 3] mapping a normalised level to (Gx/2, Gy/2, N).

    Gx, Gy: central differences smoothed across (Sobel-like 1-2-1, matching the box-filtered
    pyramid), halved so that the pair's Ix = Gx/2(prev) + Gx/2(cur) is the gradient of the mean of
    the two frames; N: the centre tap, so It = N(cur) - N(prev).
    """
    d = np.array([-0.5, 0.0, 0.5], np.float32)
    s = np.array([0.25, 0.5, 0.25], np.float32)
    w = np.zeros((3, 1, 3, 3), np.float32)
    w[0, 0] = 0.5 * np.outer(s, d)  # rows smooth, columns differentiate
    w[1, 0] = 0.5 * np.outer(d, s)
    w[2, 0, 1, 1] = 1.0
    return w


def structure_tensor(g, f_cur, f_prev, pool):
    """Block-averaged Lucas-Kanade structure tensor of the pair at one level: [1, 6, Hb, Wb]."""
    # (Ix, Iy, It) = f_cur + f_prev * (1, 1, -1)
    a = g.op("Add", [f_cur, g.op("Mul", [f_prev, g.const(np.array([1, 1, -1], np.float32).reshape(1, 3, 1, 1))])],
             "ixyt")
    ix, iy, it = g.slice_c(a, 0, 1), g.slice_c(a, 1, 2), g.slice_c(a, 2, 3)
    prod = g.op("Concat", [g.op("Mul", [ix, a]), g.op("Mul", [iy, g.slice_c(a, 1, 3)]), g.op("Mul", [it, it])],
                "prod", axis=1)
    if pool > 1:
        prod = g.op("AveragePool", [prod], "blk", kernel_shape=[pool, pool], strides=[pool, pool])
    return prod


def build():
    g = G()
    # Level 1 from the uint8 frame: integer 2x2 box sum (uint8 x uint8 -> int32), scaled to 0..1.
    s1 = g.op("ConvInteger", ["frame", g.const(np.ones((1, 1, 2, 2), np.uint8), "ones")], "sum1", strides=[2, 2])
    l1 = g.op("Mul", [g.op("Cast", [s1], "s1f", to=TensorProto.FLOAT), g.f(1.0 / (4 * 255))], outputs=["l1"])
    l2 = g.op("AveragePool", [l1], "l2", kernel_shape=[2, 2], strides=[2, 2])
    l3 = g.op("AveragePool", [l2], "l3", kernel_shape=[2, 2], strides=[2, 2])
    # Motion is estimated on contrast-normalised frames: luma minus its mean, scaled to a standard
    # deviation of NORM_STD (floored at CONTRAST_FLOOR), so a fade or an exposure change (the whole
    # frame scaled or shifted) is not mistaken for motion. Box pooling is linear, so the coarser
    # normalised levels are the pooled luma levels under the same shift and scale.
    m1 = g.op("ReduceMean", [l1, g.i64([1, 2, 3])], keepdims=1)
    d1 = g.op("Sub", [l1, m1])
    sd1 = g.op("Sqrt", [g.op("ReduceMean", [g.op("Mul", [d1, d1]), g.i64([1, 2, 3])], keepdims=1)])
    k = g.op("Div", [g.f(NORM_STD), g.op("Add", [sd1, g.f(CONTRAST_FLOOR)])])
    norm = {1: g.op("Mul", [d1, k], "n1"), 2: g.op("Mul", [g.op("Sub", [l2, m1]), k], "n2"),
            3: g.op("Mul", [g.op("Sub", [l3, m1]), k], "n3")}
    wk = g.const(level_kernel(), "wlevel")
    wins = []
    for lv in LEVELS:
        f = g.op("Conv", [norm[lv], wk], outputs=[f"f{lv}"], pads=[1, 1, 1, 1])
        wins.append(structure_tensor(g, f, f"prev_f{lv}", BLOCK // (2 ** lv)))
    g.op("Concat", wins, outputs=["tensors"], axis=1)

    # ---- per-frame evidence ----
    mad = g.op("ReduceMean", [g.op("Abs", [g.op("Sub", [l1, "prev_l1"])])], "mad", keepdims=0)
    # Soft luma histogram at 1/4 size: bin k has centre (k+0.5)/16, triangular, width 1/16 (a
    # partition of unity).
    hw = g.const(np.full((HIST_BINS, 1, 1, 1), HIST_BINS, np.float32), "hw")
    hb = g.const(-(np.arange(HIST_BINS, dtype=np.float32) + 0.5), "hb")
    l2h = g.op("Conv", [l2, hw, hb], "hdist")  # [1, 16, h, w]: 16*x - centre
    memb = g.op("Relu", [g.op("Sub", [g.f(1.0), g.op("Abs", [l2h])])])
    g.op("ReduceMean", [memb, g.i64([2, 3])], outputs=["hist"], keepdims=0)  # [1, 16]
    hdiff = g.op("Mul", [g.op("ReduceSum", [g.op("Abs", [g.op("Sub", ["hist", "prev_hist"])])], keepdims=0),
                         g.f(0.5)])
    # Structure change at 1/8: 1 - normalised cross-correlation of the two coarse frames.
    ax = g.i64([2, 3])
    zc = g.op("Sub", [l3, g.op("ReduceMean", [l3, ax], keepdims=1)])
    zp = g.op("Sub", ["prev_thumb", g.op("ReduceMean", ["prev_thumb", ax], keepdims=1)])
    cov = g.op("ReduceMean", [g.op("Mul", [zp, zc]), ax], keepdims=0)
    vp = g.op("ReduceMean", [g.op("Mul", [zp, zp]), ax], keepdims=0)
    vc = g.op("ReduceMean", [g.op("Mul", [zc, zc]), ax], keepdims=0)
    # A flat frame (the bottom of a fade) has no structure to compare: reads as no change.
    vv = g.op("Mul", [vp, vc])
    ncc = g.op("Div", [cov, g.op("Sqrt", [g.op("Add", [vv, g.f(1e-8)])])])
    struct_change = g.op("Where", [g.op("Less", [vv, g.f(1e-8)]), g.f(0.0), g.op("Sub", [g.f(1.0), ncc])])
    one = g.i64([1, 1])
    g.op("Concat", [g.op("Reshape", [x, one]) for x in (mad, hdiff, struct_change, m1, sd1)],
         outputs=["evidence"], axis=1)
    g.op("Identity", [l3], outputs=["thumb"])

    f32 = TensorProto.FLOAT
    vi = helper.make_tensor_value_info
    ins = [
        vi("frame", TensorProto.UINT8, [1, 1, "H", "W"]),
        vi("prev_l1", f32, [1, 1, "h1", "w1"]),
        vi("prev_f1", f32, [1, 3, "h1", "w1"]),
        vi("prev_f2", f32, [1, 3, "h2", "w2"]),
        vi("prev_f3", f32, [1, 3, "Hb", "Wb"]),
        vi("prev_hist", f32, [1, HIST_BINS]),
        vi("prev_thumb", f32, [1, 1, "Hb", "Wb"]),
    ]
    outs = [
        vi("tensors", f32, [1, 6 * len(LEVELS), "Hb", "Wb"]),
        vi("evidence", f32, [1, 5]),
        vi("thumb", f32, [1, 1, "Hb", "Wb"]),
        vi("l1", f32, [1, 1, "h1", "w1"]),
        vi("f1", f32, [1, 3, "h1", "w1"]),
        vi("f2", f32, [1, 3, "h2", "w2"]),
        vi("f3", f32, [1, 3, "Hb", "Wb"]),
        vi("hist", f32, [1, HIST_BINS]),
    ]
    graph = helper.make_graph(g.nodes, "undertone_extract_v2", ins, outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="undertone tools/train/extract/build_model.py")
    model.ir_version = 8
    model.doc_string = __doc__
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "models/extract/extract_v2.onnx"
    m = build()
    onnx.save(m, out)
    print(f"wrote {out}: {len(m.graph.node)} nodes")
