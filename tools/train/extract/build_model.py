#!/usr/bin/env python3
"""Builds the extraction model `models/extract/extract_v1.onnx` (hand-designed fixed weights).

Nothing here is trained: every weight is a fixed, documented filter (box pyramid, central-difference
gradients, channel selectors, histogram bin centres), so the model is reproducible bit for bit and its
meaning is readable. It exists as an ONNX graph (not Rust code) so the dense per-pixel part can move to
an NPU later; tract runs it on the CPU today.

Input  `frames`   uint8 [2, 1, H, W]  previous and current luma frame; H and W multiples of 8.
Outputs (block grid: one block per 8x8 input pixels, Hb = H/8, Wb = W/8)
  `flow`      f32 [1, 2, Hb, Wb]  optical flow (dx, dy) in input pixels per frame, coarse-to-fine
                                   Lucas-Kanade over three pyramid levels (1/2, 1/4, 1/8).
  `conf`      f32 [1, 1, Hb, Wb]  texture confidence of each block (smallest-eigenvalue proxy of the
                                   structure tensor), for weighting the camera-motion fit.
  `unexpl`    f32 [1, 1, Hb, Wb]  share of the frame difference the flow does not explain (0 = pure
                                   motion, 1 = new content), per block at the chosen level.
  `evidence`  f32 [1, 14]         per-frame scalars: mean |diff|, luma-histogram distance, coarse
                                   structure change (1 - NCC at 1/8), unexplained share of the change,
                                   8-bin directogram (mean flow projected on 8 directions, rectified),
                                   mean and standard deviation of the current frame's luma.
  `thumb`     f32 [1, 1, H/8, W/8] the current frame at 1/8 size (0..1), for gradual transitions.

Quantisation: the full-resolution stage (the only one that touches every input pixel) is an integer
`ConvInteger` on the uint8 frames with uint8 weights, accumulating in int32; everything after it works
on 4x to 64x fewer values in float.

Usage: build_model.py OUT.onnx     (then `check_model.py` compares onnxruntime with a numpy reference)
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Pyramid levels used for Lucas-Kanade: 1 = half size, 2 = quarter, 3 = eighth.
LEVELS = (1, 2, 3)
# Block size on the input grid (the flow map's resolution): 8 input pixels = one pixel at level 3.
BLOCK = 8
# Tikhonov term added to the structure tensor's diagonal: keeps flat (textureless) blocks at zero flow
# instead of amplifying noise. Units: (intensity/pixel)^2 with intensity in 0..1; 2e-5 is about a
# gradient of 1.1 grey levels per pixel, below which a block is treated as flat.
REG = 2e-5
# A level's estimate is trusted while the motion, in that level's pixels, stays below this: beyond about
# one pixel the linearisation of Lucas-Kanade saturates and underestimates, so a coarser level wins.
TRUST_PX = 0.8
# Histogram: 16 triangular bins over luma 0..1 (a partition of unity inside the range).
HIST_BINS = 16
# Directogram directions (Davis & Agrawala 2018 bin motion by angle): 8 directions, 45 degrees apart.
DIRECTIONS = 8
EPS = 1e-6
# Contrast normalisation target and floor (luma 0..1): 0.2 is a typical frame's standard deviation, so
# REG and NOISE_TT keep their meaning; the floor stops a near-flat frame's noise being blown up.
NORM_STD = 0.2
CONTRAST_FLOOR = 0.05
# Temporal-difference energy of sensor/compression noise ((2 grey levels)^2): added to a block's
# temporal energy before taking the unexplained share, so still, noisy blocks read as explained.
NOISE_TT = (2.0 / 255.0) ** 2
# A block whose change is more than UNEXPL_LO unexplained by its flow starts losing trust in that flow
# (a cut or occlusion, not motion); at UNEXPL_HI its flow is zeroed.
UNEXPL_LO = 0.5
UNEXPL_HI = 0.9
# Largest motion the pyramid can measure, in input pixels per frame: 1.5 pixels at level 3. Beyond it the
# estimate is noise (it happens at cuts), so magnitudes are clipped here instead of trusted.
MAX_FLOW_PX = 12.0
# Flow is not measurable on a near-flat frame (black between shots, the bottom of a fade): below
# FLAT_SD of luma standard deviation (either frame) the flow is gated to zero, fully open FLAT_RAMP above.
FLAT_SD = 0.015
FLAT_RAMP = 0.03


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


def lucas_kanade(g, pair, pool):
    """Block-level LK at one level. `pair` is [1, 2, h, w] (prev, cur).

    Returns (u, v, res, tt, conf): each [1, 1, Hb, Wb]; u, v in this level's pixels per frame.
    """
    grads = g.op("Conv", [pair, g.const(gradient_kernel(), "wgrad")], "grads", pads=[1, 1, 1, 1])
    sa, sb = selectors()
    pa = g.op("Conv", [grads, g.const(sa, "sela")], "pa")
    pb = g.op("Conv", [grads, g.const(sb, "selb")], "pb")
    prod = g.op("Mul", [pa, pb], "prod")
    if pool > 1:
        prod = g.op("AveragePool", [prod], "blk", kernel_shape=[pool, pool], strides=[pool, pool])
    # 3x3 blocks window (24x24 input pixels), edge windows average over what exists.
    win = g.op("AveragePool", [prod], "win", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
               count_include_pad=0)
    sxx, sxy, syy, sxt, syt, stt = (g.slice_c(win, k, k + 1) for k in range(6))
    reg = g.f(REG)
    a = g.op("Add", [sxx, reg])
    c = g.op("Add", [syy, reg])
    det = g.op("Sub", [g.op("Mul", [a, c]), g.op("Mul", [sxy, sxy])], "det")
    # u = (sxy*syt - c*sxt)/det ; v = (sxy*sxt - a*syt)/det
    u = g.op("Div", [g.op("Sub", [g.op("Mul", [sxy, syt]), g.op("Mul", [c, sxt])]), det], "u")
    v = g.op("Div", [g.op("Sub", [g.op("Mul", [sxy, sxt]), g.op("Mul", [a, syt])]), det], "v")
    # Residual of the linearised brightness constancy at the solution: tt + u*xt + v*yt (>= 0).
    res = g.op("Add", [stt, g.op("Add", [g.op("Mul", [u, sxt]), g.op("Mul", [v, syt])])])
    res = g.op("Relu", [res], "res")
    # Texture: det / trace of the unregularised tensor ~ the smaller eigenvalue.
    det0 = g.op("Sub", [g.op("Mul", [sxx, syy]), g.op("Mul", [sxy, sxy])])
    conf = g.op("Div", [g.op("Relu", [det0]), g.op("Add", [g.op("Add", [sxx, syy]), g.f(EPS)])], "conf")
    return u, v, res, stt, conf


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
    est = {}
    for lv in LEVELS:
        pair = g.op("Reshape", [levels[lv], shape_pair], f"pair{lv}")
        est[lv] = lucas_kanade(g, pair, BLOCK // (2 ** lv))

    # Coarse to fine: start from level 3; step to a finer level while the motion, in that level's
    # pixels, is within TRUST_PX.
    def scaled(lv):
        s = g.f(float(2 ** lv))
        u, v, res, tt, _ = est[lv]
        return g.op("Mul", [u, s]), g.op("Mul", [v, s]), res, tt

    fu, fv, fres, ftt = scaled(3)
    for lv in (2, 1):
        mag = g.op("Sqrt", [g.op("Add", [g.op("Mul", [fu, fu]), g.op("Mul", [fv, fv])])])
        ok = g.op("Less", [mag, g.f(TRUST_PX * 2 ** lv)], "trust")
        cu, cv, cres, ctt = scaled(lv)
        fu = g.op("Where", [ok, cu, fu])
        fv = g.op("Where", [ok, cv, fv])
        fres = g.op("Where", [ok, cres, fres])
        ftt = g.op("Where", [ok, ctt, ftt])
    unexpl = g.op("Min", [g.op("Div", [fres, g.op("Add", [ftt, g.f(NOISE_TT)])]), g.f(1.0)], outputs=["unexpl"])
    trust = g.op("Clip", [g.op("Mul", [g.op("Sub", [g.f(UNEXPL_HI), unexpl]), g.f(1.0 / (UNEXPL_HI - UNEXPL_LO))]),
                          g.f(0.0), g.f(1.0)], "ftrust")
    mag = g.op("Sqrt", [g.op("Add", [g.op("Add", [g.op("Mul", [fu, fu]), g.op("Mul", [fv, fv])]), g.f(EPS)])])
    clipk = g.op("Min", [g.op("Div", [g.f(MAX_FLOW_PX), mag]), g.f(1.0)])
    sd_min = g.op("ReduceMin", [sd1], keepdims=0)
    gate = g.op("Clip", [g.op("Mul", [g.op("Sub", [sd_min, g.f(FLAT_SD)]), g.f(1.0 / FLAT_RAMP)]), g.f(0.0), g.f(1.0)])
    k = g.op("Mul", [g.op("Mul", [trust, clipk]), gate], "fscale")
    g.op("Concat", [g.op("Mul", [fu, k]), g.op("Mul", [fv, k])], outputs=["flow"], axis=1)
    g.op("Identity", [est[2][4]], outputs=["conf"])

    # ---- per-frame evidence ----
    pair1 = g.op("Reshape", [l1, shape_pair], "p1")
    prev1, cur1 = g.slice_c(pair1, 0, 1), g.slice_c(pair1, 1, 2)
    mad = g.op("ReduceMean", [g.op("Abs", [g.op("Sub", [cur1, prev1])])], "mad", keepdims=0)
    # Soft luma histograms of both frames: bin k has centre (k+0.5)/16, triangular, width 1/16.
    hw = g.const(np.full((HIST_BINS, 1, 1, 1), HIST_BINS, np.float32), "hw")
    hb = g.const(-(np.arange(HIST_BINS, dtype=np.float32) + 0.5), "hb")
    l1h = g.op("Conv", [l1, hw, hb], "hdist")  # [2, 16, h, w]: 16*x - centre
    memb = g.op("Relu", [g.op("Sub", [g.f(1.0), g.op("Abs", [l1h])])])
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
    # The 1e-4 floor keeps a flat frame (a fade through black) from dividing by ~0.
    ncc = g.op("Div", [cov, g.op("Sqrt", [g.op("Add", [g.op("Mul", [vp, vc]), g.f(1e-8)])])])
    flat = g.op("Less", [g.op("Mul", [vp, vc]), g.f(1e-8)])
    struct_change = g.op("Where", [flat, g.f(0.0), g.op("Sub", [g.f(1.0), ncc])])
    # Unexplained share of the whole frame's change (block residuals summed, at the chosen levels).
    unex_all = g.op("Div", [g.op("ReduceSum", [fres], keepdims=0),
                            g.op("Add", [g.op("ReduceSum", [ftt], keepdims=0), g.f(EPS)])])
    # Directogram: mean over blocks of the flow projected on 8 directions, half-wave rectified.
    ang = np.arange(DIRECTIONS) * 2 * np.pi / DIRECTIONS
    wd = np.zeros((DIRECTIONS, 2, 1, 1), np.float32)
    wd[:, 0, 0, 0] = np.cos(ang)
    wd[:, 1, 0, 0] = np.sin(ang)
    proj = g.op("Relu", [g.op("Conv", ["flow", g.const(wd, "wdir")])])
    dgram = g.op("ReduceMean", [proj, ax], keepdims=0)  # [1, 8]
    # Luma mean and spread of the current frame (fades: spread -> 0, mean -> 0 or 1).
    cmean = g.op("ReduceMean", [cur1, ax], keepdims=0)
    cstd = g.op("Sqrt", [g.op("ReduceMean", [g.op("Mul", [g.op("Sub", [cur1, g.op("ReduceMean", [cur1, ax], keepdims=1)]),
                                                          g.op("Sub", [cur1, g.op("ReduceMean", [cur1, ax], keepdims=1)])]), ax], keepdims=0)])
    scalars = [g.op("Reshape", [x, g.const(np.array([1, 1], np.int64))]) for x in
               (mad, hdiff, struct_change, unex_all)]
    g.op("Concat", scalars + [dgram, g.op("Reshape", [cmean, g.const(np.array([1, 1], np.int64))]),
                              g.op("Reshape", [cstd, g.const(np.array([1, 1], np.int64))])],
         outputs=["evidence"], axis=1)
    cur3 = g.slice_c(pair3, 1, 2)
    g.op("Identity", [cur3], outputs=["thumb"])

    inp = helper.make_tensor_value_info("frames", TensorProto.UINT8, [2, 1, "H", "W"])
    outs = [
        helper.make_tensor_value_info("flow", TensorProto.FLOAT, [1, 2, "Hb", "Wb"]),
        helper.make_tensor_value_info("conf", TensorProto.FLOAT, [1, 1, "Hb", "Wb"]),
        helper.make_tensor_value_info("unexpl", TensorProto.FLOAT, [1, 1, "Hb", "Wb"]),
        helper.make_tensor_value_info("evidence", TensorProto.FLOAT, [1, 4 + DIRECTIONS + 2]),
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
