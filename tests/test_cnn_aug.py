"""CNN-Aug (Wang et al., CVPR 2020): the blur and JPEG augmentation as composed (classes, order,
probabilities, σ and quality ranges, for both of the paper's variants and DeepfakeBench's recipe), what it
does to an image, one update, the configs, and a smoke run."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from helpers import compose, train_in_process
from step_probe import fixed_batch, one_step_gradients

from detect.data.transforms import Pipeline, build_augmentations
from detect.engine.method_builder import build_method
from detect.methods.cnn_aug import CNN_AUG_TRANSFORMS, CNNAug

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}


@pytest.mark.parametrize("option,p", [("cnn_aug", 0.5), ("cnn_aug/blur_jpeg_01", 0.1)])
def test_the_papers_augmentation_as_composed(option, p):
    cfg = compose([f"method={option}"])
    transforms = build_augmentations(cfg.augment.train)
    assert tuple(type(t).__name__ for t in transforms) == CNN_AUG_TRANSFORMS
    blur, jpeg, shift, flip = transforms
    assert blur.p == p and jpeg.p == p and flip.p == 0.5 and shift.p == 1.0
    assert blur.sigma_limit == (0.001, 3.0) and blur.blur_limit == (0, 0)  # σ ~ U[0, 3], kernel from σ
    assert jpeg.quality_range == (30, 100) and jpeg.compression_type == "jpeg"
    assert shift.translate_percent == {"x": (-0.0625, 0.0625), "y": (-0.0625, 0.0625)}
    assert shift.scale == {"x": (1.0, 1.0), "y": (1.0, 1.0)} and shift.rotate == (0.0, 0.0)
    # 256 resize, 224 centre crop after a shift of up to 16 px: a random 224 crop of the 256 image
    assert (cfg.input.size, cfg.input.crop, cfg.backbone.name) == (256, 224, "resnet50")
    assert cfg.method.aug_prob == p


def test_deepfakebenchs_augmentation_as_composed():
    cfg = compose(["method=cnn_aug/dfb"])
    flip, rotate, blur, one_of, jpeg = build_augmentations(cfg.augment.train)
    assert isinstance(flip, A.HorizontalFlip) and flip.p == 0.5
    assert isinstance(rotate, A.Rotate) and rotate.limit == (-10.0, 10.0) and rotate.p == 0.5
    assert rotate.border_mode == 4  # cv2.BORDER_REFLECT_101
    assert isinstance(blur, A.GaussianBlur) and blur.blur_limit == (3, 7) and blur.p == 0.5
    assert isinstance(one_of, A.OneOf) and one_of.p == 0.5
    assert [type(t).__name__ for t in one_of.transforms] == [
        "RandomBrightnessContrast",
        "FancyPCA",
        "HueSaturationValue",
    ]
    rbc = one_of.transforms[0]
    assert rbc.brightness_limit == (-0.1, 0.1) and rbc.contrast_limit == (-0.1, 0.1)
    assert isinstance(jpeg, A.ImageCompression) and jpeg.quality_range == (40, 100) and jpeg.p == 0.5


def test_blur_and_jpeg_change_an_image_as_drawn():
    """With p forced to 1 the composed blur smooths (lower high-frequency energy) and the JPEG changes the
    pixels within its quality range; the draws are reproducible with the pipeline's seed."""
    cfg = compose(["method=cnn_aug", "method.aug_prob=1.0"])
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    blur, jpeg, _, _ = build_augmentations(cfg.augment.train)
    blur.set_random_seed(0)
    blurred = blur(image=img)["image"]
    assert (
        np.abs(np.diff(blurred.astype(float), axis=1)).mean()
        < np.abs(np.diff(img.astype(float), axis=1)).mean()
    )
    jpeg.set_random_seed(0)
    assert not np.array_equal(jpeg(image=img)["image"], img)
    pipe = Pipeline(256, [0.5] * 3, [0.5] * 3, cfg.augment.train, crop=224)
    pipe.set_seed(3)
    a = pipe(img)
    pipe.set_seed(3)
    assert a.shape == (3, 224, 224) and torch.equal(a, pipe(img))


def test_one_step_reaches_every_parameter_and_logs_its_loss():
    for option in ("cnn_aug", "cnn_aug/dfb"):
        cfg = compose([f"method={option}", "+scale=smoke"])
        torch.manual_seed(0)
        m = build_method(cfg.method, cfg.backbone)
        assert isinstance(m, CNNAug)
        out, grads = one_step_gradients(m, fixed_batch())
        assert [n for n, g in grads.items() if g == 0.0] == []
        assert set(out.logs) == {"bce"} and float(out.logs["bce"]) == pytest.approx(float(out.loss))
        m.eval()
        p = m.predict(fixed_batch()["image"])  # images only
        assert p.shape == (4,) and bool(((p >= 0) & (p <= 1)).all())


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=cnn_aug"]), compose(["method=cnn_aug/dfb"])
    assert paper.method._target_ == dfb.method._target_ == "detect.methods.cnn_aug.CNNAug"
    assert (paper.method.optim.lr, list(paper.method.optim.betas), paper.trainer.batch_size) == (
        1e-4,
        [0.9, 0.999],
        64,
    )
    assert list(paper.input.mean) == [0.485, 0.456, 0.406] and paper.method.scheduler.name == "none"
    assert (dfb.backbone.name, dfb.backbone.input_size, dfb.input.size, dfb.input.crop) == (
        "resnet34",
        256,
        256,
        None,
    )
    assert (dfb.method.name, dfb.method.optim.lr, dfb.method.optim.weight_decay) == (
        "cnn_aug_dfb",
        2e-4,
        5e-4,
    )
    assert (dfb.trainer.batch_size, dfb.trainer.epochs, dfb.protocol.frames.train) == (32, 10, 32)
    assert list(dfb.input.mean) == [0.5] * 3
    with pytest.raises(ValueError, match="aug_prob"):
        CNNAug(TINY, ADAM, aug_prob=1.5)
    assert CNNAug(TINY, ADAM, aug_prob=0.1).run_info() == {"aug_prob": 0.1}


@pytest.mark.e2e
@pytest.mark.long
def test_smoke_run_trains_and_evaluates(synthetic_cache, tmp_path):
    results = train_in_process(synthetic_cache, tmp_path, ["method=cnn_aug", "+scale=smoke"]).results
    assert 0.0 <= results["metrics"]["FF++"]["frame_auc"] <= 1.0 and results["method_info"] == {
        "aug_prob": 0.5
    }
