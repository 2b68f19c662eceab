"""Spatial partition: halo arithmetic against brute force, stitched tiles equal the whole model."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.errors import TiercutError
from tiercut.spatial.geometry import AxisWindow, Interval, Region, Window, grid_tiles, split_sizes, strip_tiles
from tiercut.spatial.stack import StackGeometry, redundant_work
from tiercut.spatial.tiles import check_partition, fused_stack, stitch

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


# --------------------------------------------------------------------- one axis, brute force
@st.composite
def axis_and_interval(draw):
    kernel = draw(st.integers(1, 5))
    dilation = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 4))
    padding = draw(st.integers(0, dilation * (kernel - 1)))
    w = AxisWindow(kernel, stride, padding, dilation)
    n = draw(st.integers(max(1, w.span - 2 * padding), 30))
    n_out = w.output_size(n)
    a = draw(st.integers(0, n_out - 1))
    b = draw(st.integers(a + 1, n_out))
    return w, n, Interval(a, b)


@given(axis_and_interval())
@settings(max_examples=300, **SETTINGS)
def test_input_interval_is_hull_of_enumerated_reads(case):
    w, n, out = case
    reads = [o * w.stride - w.padding + j * w.dilation for o in range(out.start, out.stop) for j in range(w.kernel)]
    inside = [i for i in reads if 0 <= i < n]
    got, pad_lo, pad_hi = w.input_interval(out, n)
    # the interval spans every read (the clipped reads are the re-created padding)
    assert got.start == max(0, min(reads)) and got.stop == min(n, max(reads) + 1)
    assert all(got.start <= i < got.stop for i in inside)
    assert pad_lo == max(0, -min(reads)) and pad_hi == max(0, max(reads) + 1 - n)
    assert pad_lo <= w.padding and pad_hi <= w.padding
    # padding the crop and sliding with padding 0 gives exactly the tile's outputs
    assert AxisWindow(w.kernel, w.stride, 0, w.dilation).output_size(got.size + pad_lo + pad_hi) == out.size


def test_input_interval_refuses_outputs_the_layer_does_not_make():
    w = AxisWindow(3, 2, 1)
    with pytest.raises(TiercutError, match="outside the layer"):
        w.input_interval(Interval(0, w.output_size(10) + 1), 10)
    with pytest.raises(TiercutError, match="invalid"):
        AxisWindow(0)


# --------------------------------------------------------------------- random conv/pool stacks
@st.composite
def window_stacks(draw):
    """A chain of 1-4 conv/max-pool/avg-pool layers with valid sizes, and a tile grid."""
    height, width = draw(st.integers(5, 26)), draw(st.integers(5, 26))
    layers, h, w, channels = [], height, width, 2
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "max", "avg"]))
        k = draw(st.integers(1, 4))
        d = draw(st.integers(1, 2)) if kind != "avg" else 1
        s = draw(st.integers(1, 3))
        span = d * (k - 1) + 1
        p = draw(st.integers(0, min(k // 2, span - 1)))  # torch pools need padding <= kernel/2
        if (h + 2 * p - span) // s + 1 < 1 or (w + 2 * p - span) // s + 1 < 1 or h + 2 * p < span or w + 2 * p < span:
            continue
        layers.append((kind, k, s, p, d))
        h, w = (h + 2 * p - span) // s + 1, (w + 2 * p - span) // s + 1
    if not layers:
        layers.append(("conv", 1, 1, 0, 1))
    rows, cols = draw(st.integers(1, min(4, h))), draw(st.integers(1, min(4, w)))
    return height, width, layers, rows, cols, channels


def _build(layers, channels, proxy=False):
    mods = []
    for kind, k, s, p, d in layers:
        if kind == "conv" or proxy:
            conv = torch.nn.Conv2d(channels, channels, k, s, p, d, bias=not proxy)
            if proxy:  # positive weights: a read shows up in the gradient, nothing cancels
                torch.nn.init.constant_(conv.weight, 1.0)
            mods.append(conv)
            if not proxy:
                mods.append(torch.nn.ReLU())
        elif kind == "max":
            mods.append(torch.nn.MaxPool2d(k, s, p, d))
        else:
            mods.append(torch.nn.AvgPool2d(k, s, p))
    return torch.nn.Sequential(*mods).eval()


@given(window_stacks())
@settings(max_examples=30, **SETTINGS)
def test_regions_cover_every_input_a_tile_depends_on(case):
    """Brute force: the inputs whose gradient is non-zero lie inside the computed input region."""
    height, width, layers, rows, cols, channels = case
    proxy = _build(layers, channels, proxy=True)
    x = torch.ones(1, channels, height, width, dtype=torch.float64, requires_grad=True)
    stack = fused_stack(proxy.double(), x.detach())
    out_h, out_w = stack.geometry.output_hw
    dense = all(d == 1 and s <= k for _, k, s, _, d in layers)
    for tile in grid_tiles(out_h, out_w, rows, cols):
        x.grad = None
        y = proxy.double()(x)
        y[:, :, tile.rows.start : tile.rows.stop, tile.cols.start : tile.cols.stop].sum().backward()
        hit = (x.grad[0, 0] != 0).nonzero()
        if hit.numel() == 0:  # the tile reads only padding
            continue
        region = stack.geometry.input_region(tile)
        r0, r1 = int(hit[:, 0].min()), int(hit[:, 0].max()) + 1
        c0, c1 = int(hit[:, 1].min()), int(hit[:, 1].max()) + 1
        assert region.contains(Region.of(r0, r1, c0, c1))
        if dense:  # contiguous reads: the halo is exact, not just sufficient
            assert region == Region.of(r0, r1, c0, c1)


@given(window_stacks(), st.integers(0, 2**16))
@settings(max_examples=40, **SETTINGS)
@pytest.mark.slow
def test_stitched_tiles_equal_the_whole_stack(case, seed):
    height, width, layers, rows, cols, channels = case
    torch.manual_seed(seed)
    model = _build(layers, channels)
    x = torch.randn(1, channels, height, width)
    stack = fused_stack(model, x)
    out_h, out_w = stack.geometry.output_hw
    expected = model(x)
    for tiles in (grid_tiles(out_h, out_w, rows, cols), strip_tiles(out_h, out_w, [1.0 + i for i in range(min(rows, out_h))])):
        got = stack.run_tiled(x, tiles)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------- real models' conv stacks
def _resnet18_stack(depth: int):
    import torchvision

    torch.manual_seed(1)
    r = torchvision.models.resnet18().eval()
    parts = [r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4][:depth]
    return torch.nn.Sequential(*parts).eval()


def _vgg16_stack(layers: int):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(2)  # VGG16's feature extractor (config "D") without building its 120M-weight classifier
    return make_layers(cfgs["D"])[:layers].eval()


@pytest.mark.parametrize(
    ("name", "builder", "depth", "hw", "grids"),
    [
        ("vgg16 first 2 blocks", _vgg16_stack, 10, (29, 23), [(1, 1), (2, 3), (7, 5)]),
        ("resnet18 to layer2", _resnet18_stack, 6, (45, 37), [(2, 3), (6, 5)]),
    ],
)
@pytest.mark.slow
def test_real_conv_stacks_stitch_exactly(name, builder, depth, hw, grids):
    model = builder(depth)
    x = torch.randn(1, 3, *hw)
    stack = fused_stack(model, x)
    expected = model(x)
    out_h, out_w = stack.geometry.output_hw
    for rows, cols in grids:
        got = stack.run_tiled(x, grid_tiles(out_h, out_w, rows, cols))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=f"{name} {rows}x{cols}")
    got = stack.run_tiled(x, strip_tiles(out_h, out_w, [3.0, 1.0, 2.0]))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_whole_conv_stacks_of_vgg16_and_resnet18_stitch_exactly():
    """Every conv layer of both models fused (ResNet's skips and downsamples included)."""
    cases = ((_vgg16_stack(31), (71, 67), [(2, 2), (2, 1)]), (_resnet18_stack(8), (97, 67), [(2, 2), (4, 3), (1, 3)]))
    for model, hw, grids in cases:
        x = torch.randn(1, 3, *hw)
        stack = fused_stack(model, x)
        out_h, out_w = stack.geometry.output_hw
        for rows, cols in grids:
            got = stack.run_tiled(x, grid_tiles(out_h, out_w, rows, cols))
            torch.testing.assert_close(got, model(x), atol=1e-5, rtol=1e-5)


def test_branching_stack_with_concat_and_residual():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.b = torch.nn.Conv2d(3, 4, 5, stride=1, padding=2, dilation=1)
            self.pool = torch.nn.MaxPool2d(3, 2, 1)
            self.c = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2)

        def forward(self, x):
            y = torch.cat([torch.relu(self.a(x)), self.b(x)], dim=1)
            y = self.pool(y)
            return self.c(y) + y * 0.5

    torch.manual_seed(3)
    model = Block().eval()
    x = torch.randn(2, 3, 23, 19)
    stack = fused_stack(model, x)
    out_h, out_w = stack.geometry.output_hw
    for rows, cols in [(1, 1), (3, 4), (out_h, 1)]:
        torch.testing.assert_close(stack.run_tiled(x, grid_tiles(out_h, out_w, rows, cols)), model(x), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------- redundant work and JSON
def test_redundant_work_is_zero_for_one_tile_and_counts_halo_overlap():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.Conv2d(1, 1, 3, padding=1)).eval()
    stack = fused_stack(model, torch.randn(1, 1, 10, 10))
    g = stack.geometry
    assert redundant_work(g, grid_tiles(10, 10, 1, 1)) == 0.0
    # two strips of 5 rows: the first conv computes 6 rows for each (one halo row), the second 5
    got = redundant_work(g, strip_tiles(10, 10, [1.0, 1.0]))
    assert got == pytest.approx((6 + 6 + 5 + 5) / 20.0 - 1.0)
    assert redundant_work(g, grid_tiles(10, 10, 5, 5)) > redundant_work(g, grid_tiles(10, 10, 2, 2)) > got / 2


def test_geometry_round_trips_through_json():
    import json

    stack = fused_stack(_resnet18_stack(5), torch.randn(1, 3, 33, 29))
    again = StackGeometry.from_dict(json.loads(json.dumps(stack.geometry.to_dict())))
    assert again == stack.geometry
    tile = grid_tiles(*again.output_hw, 2, 2)[3]
    assert again.regions(tile) == stack.geometry.regions(tile)


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("model", "match"),
    [
        (torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.Flatten()), "not spatially local"),
        (torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.AdaptiveAvgPool2d(1)), "not spatially local"),
        (torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")), "zero padding"),
        (torch.nn.Sequential(torch.nn.MaxPool2d(2, ceil_mode=True)), "ceil_mode"),
        (torch.nn.Sequential(torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False)), "excludes padding"),
        (torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.BatchNorm2d(3).train()), "training mode"),
    ],
)
def test_layers_that_cannot_be_tiled_are_refused_by_name(model, match):
    with pytest.raises(TiercutError, match=match):
        fused_stack(model, torch.randn(1, 3, 8, 8))


def test_bad_tiles_are_refused():
    stack = fused_stack(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)), torch.randn(1, 1, 8, 8))
    with pytest.raises(TiercutError, match="not a non-empty part"):
        stack.geometry.regions(Region.of(0, 7, 0, 6))
    with pytest.raises(TiercutError, match="partition"):
        check_partition([Region.of(0, 3, 0, 6), Region.of(4, 6, 0, 6)], 6, 6)
    with pytest.raises(TiercutError, match="overlap"):
        check_partition([Region.of(0, 4, 0, 6), Region.of(3, 5, 0, 6)], 6, 6)
    with pytest.raises(TiercutError, match="shape"):
        stitch((1, 1, 6, 6), [Region.of(0, 6, 0, 6)], [torch.zeros(1, 1, 5, 6)])
    with pytest.raises(TiercutError, match="non-empty parts"):
        split_sizes(3, [1.0] * 4)
    with pytest.raises(TiercutError, match="positive"):
        split_sizes(3, [1.0, 0.0])
    with pytest.raises(TiercutError, match="empty"):
        Region.from_list([2, 2, 0, 1])


@given(st.integers(1, 200), st.lists(st.floats(0.01, 100.0), min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_split_sizes_partition_and_follow_shares(total, shares):
    if total < len(shares):
        return
    sizes = split_sizes(total, shares)
    assert sum(sizes) == total and all(s >= 1 for s in sizes)
    spare = total - len(shares)
    for size, share in zip(sizes, shares):  # within one element of the proportional part
        assert abs((size - 1) - spare * share / sum(shares)) < 1.0 + 1e-9


def test_window_output_shape_matches_torch():
    conv = torch.nn.Conv2d(1, 1, (3, 5), (2, 1), (1, 2), (2, 1))
    w = Window.of(conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    assert w.output_shape(17, 11) == tuple(conv(torch.zeros(1, 1, 17, 11)).shape[2:])
