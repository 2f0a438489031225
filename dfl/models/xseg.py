"""XSeg: DFL's face segmentation model (``models/Model_XSeg``), registered as the "segmenter" kind.

The network is ``core/leras/models/XSeg.py``: a U-Net of conv3 + filter response norm + TLU blocks,
anti-aliased (blur-pool) downsampling, a dense bottleneck at 4x4 and transpose-conv upsampling with skip
connections, run at 256 px with ``base_ch=32`` and one output channel (:class:`XSeg`).  The model
(:class:`XSegModel`) asks DFL's options (face type, default wf; batch size 4 in 2..16; pretraining), and its
recipe (:class:`XSegRecipe`) is DFL's: sigmoid cross-entropy of the logits against the labels' mask (in
pretraining: DSSIM + MSE against the grey face, skips zeroed), RMSprop at lr 1e-4 with lr dropout 0.3.
It learns from the labelled faces of both facesets (:class:`dfl.mask_samples.MaskTrainingData`); a
trained XSeg writes masks into facesets (``dfl xseg apply``) through :func:`dfl.xseg.predictor.load_predictor`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfl.models.base import Model
from dfl.models.blocks import conv2d, conv_transpose2d, dense
from dfl.models.options import option
from dfl.models.registry import SEGMENTER, DataRequest, DflImport, ModelSpec, OptimizerConfig, Update, register_model

_BLUR_TAPS = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0],
              5: [1.0, 4.0, 6.0, 4.0, 1.0]}


class FRNorm2d(nn.Module):
    """Filter response normalisation (Singh & Krishnan 2019) with DFL's learnable eps."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ch))
        self.bias = nn.Parameter(torch.zeros(ch))
        self.eps = nn.Parameter(torch.full((1,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        nu2 = x.float().square().mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(nu2 + self.eps.abs()).to(x.dtype)
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class TLU(nn.Module):
    """Thresholded linear unit: max(x, tau) with a learnable per-channel tau."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.tau = nn.Parameter(torch.zeros(ch))

    def forward(self, x: Tensor) -> Tensor:
        return torch.maximum(x, self.tau.view(1, -1, 1, 1).to(x.dtype))


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling with a binomial filter (asymmetric padding as DFL)."""

    def __init__(self, filt_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        a = torch.tensor(_BLUR_TAPS[filt_size])
        k = a[:, None] * a[None, :]
        self.register_buffer("kernel", (k / k.sum())[None, None], persistent=False)
        self.stride = stride
        self.pad = ((filt_size - 1) // 2, -(-(filt_size - 1) // 2))

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        lo, hi = self.pad
        x = F.pad(x, (lo, hi, lo, hi))
        return F.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, -1, -1), stride=self.stride, groups=c)


class ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = conv2d(in_ch, out_ch, 3)
        self.frn = FRNorm2d(out_ch)
        self.tlu = TLU(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.tlu(self.frn(self.conv(x)))


class UpConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = conv_transpose2d(in_ch, out_ch, 3, stride=2)
        self.frn = FRNorm2d(out_ch)
        self.tlu = TLU(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.tlu(self.frn(self.conv(x)))


class XSeg(nn.Module):
    """XSeg U-Net; ``forward`` returns (logits, sigmoid mask).  Input resolution must be 256 (the
    bottleneck is a 4x4 dense layer after six halvings)."""

    def __init__(self, in_ch: int = 3, base_ch: int = 32, out_ch: int = 1) -> None:
        super().__init__()
        b = base_ch
        self.base_ch = b
        self.conv01, self.conv02, self.bp0 = ConvBlock(in_ch, b), ConvBlock(b, b), BlurPool(4)
        self.conv11, self.conv12, self.bp1 = ConvBlock(b, b * 2), ConvBlock(b * 2, b * 2), BlurPool(3)
        self.conv21, self.conv22, self.bp2 = ConvBlock(b * 2, b * 4), ConvBlock(b * 4, b * 4), BlurPool(2)
        self.conv31, self.conv32, self.conv33 = ConvBlock(b * 4, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.bp3 = BlurPool(2)
        self.conv41, self.conv42, self.conv43 = ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.bp4 = BlurPool(2)
        self.conv51, self.conv52, self.conv53 = ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.bp5 = BlurPool(2)
        self.dense1 = dense(4 * 4 * b * 8, 512)
        self.dense2 = dense(512, 4 * 4 * b * 8)
        self.up5 = UpConvBlock(b * 8, b * 4)
        self.uconv53, self.uconv52, self.uconv51 = ConvBlock(b * 12, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.up4 = UpConvBlock(b * 8, b * 4)
        self.uconv43, self.uconv42, self.uconv41 = ConvBlock(b * 12, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.up3 = UpConvBlock(b * 8, b * 4)
        self.uconv33, self.uconv32, self.uconv31 = ConvBlock(b * 12, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.up2 = UpConvBlock(b * 8, b * 4)
        self.uconv22, self.uconv21 = ConvBlock(b * 8, b * 4), ConvBlock(b * 4, b * 4)
        self.up1 = UpConvBlock(b * 4, b * 2)
        self.uconv12, self.uconv11 = ConvBlock(b * 4, b * 2), ConvBlock(b * 2, b * 2)
        self.up0 = UpConvBlock(b * 2, b)
        self.uconv02, self.uconv01 = ConvBlock(b * 2, b), ConvBlock(b, b)
        self.out_conv = conv2d(b, out_ch, 3)

    def forward(self, inp: Tensor, pretrain: bool = False) -> tuple[Tensor, Tensor]:
        """``pretrain=True`` zeroes the skips, as DFL's XSeg pretraining does."""
        x0 = self.conv02(self.conv01(inp))
        x1 = self.conv12(self.conv11(self.bp0(x0)))
        x2 = self.conv22(self.conv21(self.bp1(x1)))
        x3 = self.conv33(self.conv32(self.conv31(self.bp2(x2))))
        x4 = self.conv43(self.conv42(self.conv41(self.bp3(x3))))
        x5 = self.conv53(self.conv52(self.conv51(self.bp4(x4))))
        x = self.dense2(self.dense1(torch.flatten(self.bp5(x5), 1)))
        x = x.reshape(-1, self.base_ch * 8, 4, 4)

        def skip(t: Tensor) -> Tensor:
            return torch.zeros_like(t) if pretrain else t

        x = self.uconv51(self.uconv52(self.uconv53(torch.cat((self.up5(x), skip(x5)), 1))))
        x = self.uconv41(self.uconv42(self.uconv43(torch.cat((self.up4(x), skip(x4)), 1))))
        x = self.uconv31(self.uconv32(self.uconv33(torch.cat((self.up3(x), skip(x3)), 1))))
        x = self.uconv21(self.uconv22(torch.cat((self.up2(x), skip(x2)), 1)))
        x = self.uconv11(self.uconv12(torch.cat((self.up1(x), skip(x1)), 1)))
        x = self.uconv01(self.uconv02(torch.cat((self.up0(x), skip(x0)), 1)))
        logits = self.out_conv(x)
        return logits, torch.sigmoid(logits)


# -- the registered model ------------------------------------------------------------------------------
RESOLUTION = 256          # DFL's XSeg is 256 px, fixed
OPTIONS = (
    option("face_type", "str", "wf", "Face type", choices=("h", "mf", "f", "wf", "head"), changeable=False),
    option("batch_size", "int", 4, "Batch size", min=2, max=16),
    option("pretrain", "bool", False, "Enable pretraining mode"),
)


class XSegModel(Model):
    """DFL's XSeg model: one network, ``XSeg`` (DFL's ``XSeg_256.npy``), masks at the model's face type."""

    model_type = "XSeg"
    network_names = ("XSeg",)

    def __init__(self, options: dict[str, Any], base_ch: int = 32) -> None:
        super().__init__({**options, "resolution": RESOLUTION})
        self.pretrain = bool(options.get("pretrain", False))
        self.XSeg = XSeg(3, base_ch, 1)

    def forward_train(self, image: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        logits, mask = self.XSeg(image, pretrain=self.pretrain)
        return {"logits": logits, "mask": mask}

    def forward(self, image: Tensor) -> Tensor:
        """Faces NCHW BGR [0, 1] -> masks N1HW in [0, 1]."""
        return self.XSeg(image)[1]


def green_overlay(face: Tensor, mask: Tensor) -> Tensor:
    """DFL's preview of a mask: the face inside it, half the face and half green outside."""
    green = torch.tensor([0.0, 1.0, 0.0], device=face.device, dtype=face.dtype).view(1, 3, 1, 1)
    return face * mask + 0.5 * face * (1 - mask) + 0.5 * green * (1 - mask)


class XSegRecipe:
    """DFL's XSeg training step (see the module doc); its preview grid's rows are the preview faces, its
    columns: a labelled face with its labels, the same with the predicted mask, a src face and a dst face
    with theirs."""

    def __init__(self, model: XSegModel, options: dict[str, Any]) -> None:
        self.model, self.options = model, dict(options)
        self.networks: dict[str, nn.Module] = {}
        self.inputs = ("image", "mask", "src", "dst")
        self.conv_inputs = ("image",)
        self.preview_inputs = ("image", "src", "dst")

    def updates(self) -> list[Update]:
        return [Update("opt", list(self.model.XSeg.parameters()), optimizer(self.options), self._loss)]

    def _loss(self, batch: dict[str, Tensor], carry: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        out = self.model.forward_train(batch["image"])
        target = batch["mask"]
        if self.model.pretrain:
            from dfl.models.losses import dssim

            pred, r = out["mask"].float(), RESOLUTION
            per_face = (5 * dssim(target, pred, int(r / 11.6)) + 5 * dssim(target, pred, int(r / 23.2))
                        + 10 * (target - pred).square().mean(dim=(1, 2, 3)))
        else:
            per_face = F.binary_cross_entropy_with_logits(out["logits"].float(), target, reduction="none")
            per_face = per_face.mean(dim=(1, 2, 3))
        # DFL differentiates the per-face losses' sum and reports their mean
        return per_face.sum(), {"loss": per_face.detach().mean()}

    def preview(self, batch: dict[str, Tensor], **kwargs: Any) -> dict[str, Tensor]:
        return {f"pred_{k}": self.model(batch[k]) for k in ("image", "src", "dst")}

    def preview_columns(self, batch: dict[str, Tensor]) -> list[Tensor]:
        n = batch["image"].shape[0]
        faces = torch.cat([batch["image"], batch["src"], batch["dst"]])
        pred = self.model(faces)
        return [green_overlay(batch["image"], batch["mask"].to(faces.dtype)), pred[:n],
                green_overlay(batch["image"], pred[:n]), green_overlay(batch["src"], pred[n:2 * n]),
                green_overlay(batch["dst"], pred[2 * n:])]


def optimizer(options: dict[str, Any]) -> OptimizerConfig:
    """DFL's XSeg optimiser: RMSprop at lr 1e-4 with lr dropout 0.3."""
    return OptimizerConfig("rmsprop", lr=1e-4, lr_dropout=0.3)


def training_data(model: XSegModel, options: dict[str, Any], request: DataRequest) -> Any:
    """The labelled faces of src and dst together (pretraining: every face of the pretraining faceset,
    warped, with its grey image as the target, as DFL)."""
    from dfl.mask_samples import MaskTrainingData, PretrainData

    if model.pretrain:
        return PretrainData(request.src_dir, RESOLUTION, model.face_type, request.batch_size,
                            workers=request.workers, seed=request.seed, notify=request.notify)
    return MaskTrainingData([request.src_dir, request.dst_dir], RESOLUTION, model.face_type, request.batch_size,
                            workers=request.workers, seed=request.seed, notify=request.notify)


def trace(model: XSegModel, batch: int) -> Any:
    """One training forward pass of a batch of empty faces (``meta`` device: shapes only)."""
    return model.forward_train(torch.empty(batch, 3, RESOLUTION, RESOLUTION))


SPEC = register_model(ModelSpec(
    name="XSeg",
    kind=SEGMENTER,
    summary="256 px face mask (segmentation) from labelled faces",
    options=OPTIONS,
    build=XSegModel,
    fixed={"resolution": RESOLUTION},
    recipe=XSegRecipe,
    training_data=training_data,
    optimizer=optimizer,
    trace=trace,
    default_name="XSeg",     # DFL keeps one XSeg per workspace and asks no name: model/XSeg_XSeg here
    # DFL names XSeg by its class: XSeg_256.npy (the network), XSeg_256_opt.npy (RMSprop), XSeg_data.dat
    dfl_import=DflImport(lambda options: ["XSeg"], files={"XSeg": "256", "opt": "256_opt"},
                         loss_names=("loss",), by_class=True),
))
