"""``data=image_folder``: your own folder of class sub-folders of images, as torchvision's ImageFolder reads it.

Folders are written with Pillow into ``tmp_path``: tiny images (8x8), 20 per class. The unit tests
check the layout rules, the one-line refusals, and that a fold's normaliser and augmentation see
its training rows only; the end-to-end tests run the CLI on a generated folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli, load_study, mlflow_runs
from optuna.trial import TrialState

from nnsearch.data.image_files import scan
from nnsearch.data.images import ImageFolderData, load_image_folder
from nnsearch.errors import NNSearchError

TINY = ["study.n_trials=2", "cv.folds=2", "trainer.max_epochs=2", "report.progress=off", "report.study_plots=false", "tracking.trial_plots=none",
        "model.channels=4", "model.n_blocks=1", "model.hidden_dim=8"]
ZERO_OUT = {"zero": {"_target_": "torch.mul", "_partial_": True, "other": 0.0}}  # an "augmentation" anyone can spot: blank images


def write_folder(root: Path, classes=("cat", "dog"), per_class: int = 20, size=(8, 8), mode: str = "RGB", brightness=None) -> Path:
    """``root/CLASS/NNN.png``: random images; ``brightness(class, n)`` sets a constant image instead."""
    from PIL import Image

    rng = np.random.default_rng(0)
    channels = {"L": 1, "RGB": 3}[mode]
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            if brightness is None:
                pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
            else:
                pixels = np.full((*size, channels), brightness(label, n), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(root / name / f"{n:03d}.png")
    return root


# -- the layout ------------------------------------------------------------------------------------


def test_classes_are_the_sorted_sub_folders_and_images_are_found_below_them_by_extension(tmp_path):
    write_folder(tmp_path, classes=("zebra", "ant"), per_class=2)
    (tmp_path / "ant" / "deeper").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "ant" / "deeper" / "X.PNG")  # any case, any depth
    (tmp_path / "ant" / "notes.txt").write_text("not an image by its extension: skipped, as ImageFolder does")
    (tmp_path / "ant" / ".DS_Store").write_text("hidden")
    layout = scan(tmp_path)
    assert layout.classes == ("ant", "zebra")
    assert layout.files == ("ant/000.png", "ant/001.png", "ant/deeper/X.PNG", "zebra/000.png", "zebra/001.png")
    assert layout.labels.tolist() == [0, 0, 0, 1, 1]
    assert layout.skipped == 1


def test_size_and_channels_are_read_from_the_files_or_set(tmp_path):
    data = load_image_folder(path=str(write_folder(tmp_path / "grey", mode="L", size=(8, 6))))
    assert data.input_shape == (1, 8, 6) and data.classes == ("cat", "dog") and data.task.value == "binary"
    assert data.dataset()[0][0].shape == (1, 8, 6)
    resized = load_image_folder(path=str(tmp_path / "grey"), image_size=[4, 5], channels=3)
    assert resized.input_shape == (3, 4, 5) and resized.dataset()[3][0].shape == (3, 4, 5)


def test_files_are_read_from_disk_above_the_cache_line_and_give_the_same_items(tmp_path):
    write_folder(tmp_path)
    cached, lazy = load_image_folder(path=str(tmp_path)), load_image_folder(path=str(tmp_path), cache_mb=0)
    assert cached.pixels is not None and lazy.pixels is None
    for i in (0, 7, 39):
        assert torch.equal(cached.dataset()[i][0], lazy.dataset()[i][0])
        assert cached.dataset()[i][1] == lazy.dataset()[i][1]


# -- bad input: one line before any trial ---------------------------------------------------------


def test_bad_folders_are_refused_with_what_to_fix(tmp_path):
    from PIL import Image

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NNSearchError, match=r"is empty; it should hold one sub-folder of images per class"):
        load_image_folder(path=str(empty))
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    with pytest.raises(NNSearchError, match=r"has no class sub-folders, only 1 file\(s\) such as a.png"):
        load_image_folder(path=str(flat))
    with pytest.raises(NNSearchError, match=r"does not exist"):
        load_image_folder(path=str(tmp_path / "missing"))
    broken = write_folder(tmp_path / "broken")
    (broken / "dog" / "fake.jpg").write_text("a text file named like an image")
    with pytest.raises(NNSearchError, match=r"dog/fake.jpg is not an image Pillow can read"):
        load_image_folder(path=str(broken))
    mixed = write_folder(tmp_path / "mixed")
    Image.new("RGB", (16, 12)).save(mixed / "dog" / "big.png")
    with pytest.raises(NNSearchError, match=r"differ in size \(cat/000.png is 8x8, dog/big.png is 12x16\): set data.image_size"):
        load_image_folder(path=str(mixed))
    assert load_image_folder(path=str(mixed), image_size=8).input_shape == (3, 8, 8)  # resized, so accepted
    one_class = write_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(NNSearchError, match=r"one class folder \(cat\)"):
        load_image_folder(path=str(one_class))


def test_an_augmentation_that_changes_the_image_size_is_refused(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(NNSearchError, match=r"data.augment changes the image shape \(3, 8, 8\) to \(3, 6, 6\)"):
        load_image_folder(path=str(tmp_path), augment={"crop": {"_target_": "kornia.augmentation.RandomCrop", "size": [6, 6]}})


# -- a fold's normaliser and augmentation see its training rows only ------------------------------


def folds_of(data: ImageFolderData, train, val):
    fold = data.fold(0, np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64), 2)
    return fold, data.loaders(fold, seed=0)


def test_the_normaliser_is_fitted_on_the_training_rows_only(tmp_path):
    # rows 0-9 of each class are dark (value 10), rows 10-19 bright (value 200): train on the dark ones, validate on the bright
    write_folder(tmp_path, brightness=lambda label, n: 10 + label if n < 10 else 200)
    data = load_image_folder(path=str(tmp_path))
    train, val = [*range(10), *range(20, 30)], [*range(10, 20), *range(30, 40)]
    fold, (train_loader, val_loader) = folds_of(data, train, val)
    mean, std = data.normaliser(fold.train_rows)
    raw_train = torch.stack([data.dataset()[i][0] for i in train])
    assert mean.flatten().tolist() == pytest.approx(raw_train.mean(dim=(0, 2, 3)).tolist(), abs=1e-6)  # 10.5/255: no bright row in it
    assert std.flatten().tolist() == pytest.approx(raw_train.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-5)
    x_train = torch.cat([x for x, _ in train_loader])
    assert x_train.mean().item() == pytest.approx(0.0, abs=1e-5)  # standardised with its own statistics
    x_val = torch.cat([x for x, _ in val_loader])
    assert x_val.mean().item() > 100  # the bright rows, scaled by the dark rows' statistics, never fitted on


def test_augmentation_changes_training_batches_and_never_validation_batches(tmp_path):
    write_folder(tmp_path)
    data = load_image_folder(path=str(tmp_path), augment=ZERO_OUT)
    train, val = [*range(10), *range(20, 30)], [*range(10, 20), *range(30, 40)]
    fold, (train_loader, val_loader) = folds_of(data, train, val)
    mean, std = data.normaliser(fold.train_rows)
    blank = (torch.zeros(3, 8, 8) - mean) / std
    for x, _ in train_loader:
        assert torch.allclose(x, blank.expand_as(x))  # every training image went through the augmentation
    x_val, y_val = zip(*val_loader)
    expected = torch.stack([(data.dataset()[i][0] - mean) / std for i in val])
    assert torch.allclose(torch.cat(x_val), expected)  # validation images exactly as read, only normalised
    assert torch.cat(y_val).tolist() == [data.dataset()[i][1] for i in val]


def test_a_batch_transform_and_a_single_image_transform_both_augment_every_training_image(tmp_path):
    write_folder(tmp_path, per_class=4)
    flip = {"flip": {"_target_": "kornia.augmentation.RandomHorizontalFlip", "p": 1.0}}
    for per_image in (False, True):  # kornia on the batch (B,C,H,W), or called on each image (C,H,W)
        data = load_image_folder(path=str(tmp_path), augment=flip, augment_per_image=per_image, batch_size=8)
        fold, (train_loader, _) = folds_of(data, range(8), [])
        (x, _), = list(train_loader)
        mean, std = data.normaliser(fold.train_rows)
        raw = [(data.dataset()[i][0] - mean) / std for i in range(8)]
        for image in x:
            assert not any(torch.allclose(image, r, atol=1e-6) for r in raw)
            assert sum(torch.allclose(image.flip(-1), r, atol=1e-6) for r in raw) == 1, per_image


def test_the_final_model_takes_raw_images_and_normalises_them_as_in_training(tmp_path):
    write_folder(tmp_path)
    data = load_image_folder(path=str(tmp_path))
    seen = []
    model = data.inference_module(torch.nn.Module(), data.rows)
    model.module.forward = lambda x: seen.append(x) or x.mean()
    model(data.dataset()[0][0][None])
    mean, std = data.normaliser(data.rows)
    assert torch.allclose(seen[0], (data.dataset()[0][0][None] - mean) / std)


@pytest.mark.slow  # imports Lightning (~5 s)
def test_a_fold_fed_by_a_loader_is_scored_batch_by_batch_as_on_all_its_rows_at_once(tmp_path):
    from nnsearch.data.dataset import Task
    from nnsearch.fit.fold import FoldResult, evaluate_batches
    from nnsearch.models.cnn import CNN
    from nnsearch.models.module import SupervisedModule

    write_folder(tmp_path, classes=("a", "b", "c"))
    data = load_image_folder(path=str(tmp_path), batch_size=7)
    _, (_, val_loader) = folds_of(data, range(0, 60, 2), range(1, 60, 2))
    torch.manual_seed(0)
    module = SupervisedModule(CNN((3, 8, 8), 3, channels=4, n_blocks=1), Task.MULTICLASS, torch.optim.Adam, None, n_classes=3)
    streamed = evaluate_batches(module, FoldResult(0, history=[{}]), val_loader, keep_predictions=True)
    x, y = (torch.cat(parts) for parts in zip(*val_loader))
    assert streamed.metrics == pytest.approx(module.evaluate(x, y))
    assert streamed.predictions.targets.tolist() == y.tolist() and streamed.predictions.outputs.shape == (30, 3)


# -- end to end: the CLI on a generated folder -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("parallel", [1, 2])
def test_a_cnn_study_runs_on_an_image_folder_with_folds_in_turn_or_side_by_side(tmp_path, parallel):
    write_folder(tmp_path / "pictures", classes=("a", "b", "c"))
    flip = "+data.augment.flip._target_=kornia.augmentation.RandomHorizontalFlip"
    done = cli(["data=image_folder", "data.path=pictures", "model=cnn", f"cv.parallel={parallel}", flip, "study.name=pictures",
                "+search_space={optimizer.lr: {type: float, low: 0.001, high: 0.01, log: true}}", *TINY], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    study = load_study(tmp_path, "pictures")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(len(t.user_attrs["fold_scores"]) == 2 for t in study.trials)
    _, parents, children = mlflow_runs(tmp_path, "pictures")
    assert len(parents) == 1 and len(children) == 2
    assert "Held-out test split (12 rows" in done.stdout  # the final model retrained on the 48 development images
    client, _, _ = mlflow_runs(tmp_path, "pictures")
    final = client.search_runs([parents[0].info.experiment_id], "tags.`nnsearch.role` = 'final'")
    load = (f"import mlflow, numpy as np; mlflow.set_tracking_uri('sqlite:///{tmp_path / 'mlflow.db'}'); "
            f"m = mlflow.pyfunc.load_model('{final[0].data.tags['model_uri']}'); "
            "print(np.asarray(m.predict(np.random.rand(4, 3, 8, 8).astype(np.float32))).tolist())")
    loaded = subprocess.run([sys.executable, "-c", load], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert set(eval(loaded.stdout.strip().splitlines()[-1])) <= {"a", "b", "c"}  # class names printed by the child


@pytest.mark.slow
def test_a_bad_image_folder_ends_in_one_line_and_exit_2_before_any_trial(tmp_path):
    folder = write_folder(tmp_path / "pictures")  # data.path is relative: the message names the file as the user wrote it
    (folder / "cat" / "oops.png").write_bytes(b"not a png")
    done = cli(["data=image_folder", "data.path=pictures", "model=cnn", *TINY], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["nnsearch: error: pictures/cat/oops.png is not an image Pillow can read (UnidentifiedImageError); remove it or replace it."]
    assert not (tmp_path / "optuna.journal").exists()


@pytest.mark.slow
def test_the_shipped_image_study_runs_on_the_folder_its_command_writes(tmp_path):
    written = cli(["+study=digits_folder_cnn", "command=make_example_data"], tmp_path)
    assert written.returncode == 0, written.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == [str(d) for d in range(10)]
    assert len(list((tmp_path / "digits").glob("*/*.png"))) == 1797
    done = cli(["+study=digits_folder_cnn", "study.n_trials=1", "cv.folds=2", "trainer.max_epochs=1", "final.retrain=false", "report.progress=off",
                "report.study_plots=false", "tracking.trial_plots=none", "cv.parallel=1"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [t.state for t in load_study(tmp_path, "digits_folder_cnn").trials] == [TrialState.COMPLETE]
