"""xai.audit: faithfulness, sanity metrics, the report, the CLI, and the oracles on the demo
models."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import cv2
import keras
import numpy as np
import pytest

import xai
from xai import cli, datasets, demo, testing
from xai.audit import EDGE_DETECTOR, faithfulness, pointing_game, sanity

MALICIOUS = "<script>alert(1)</script>"

# ----------------------------------------------------------------------------------- fast: maths


def test_auc_trapezoid_by_hand():
    curves = np.array([[1, 1, 1], [1, 0.5, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(faithfulness.auc(curves), [1.0, 0.5, 0.25, 0.25])


def test_deletion_and_insertion_curves_on_a_pixel_counting_model():
    # "probability" of class 0 = mean pixel value of an all-ones image: deletion with zeros
    # removes 1/K of the mass per step, so the curve is 1 - k/K and its AUC 0.5.
    images = np.ones((3, 8, 8, 1), np.float32)
    heat = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)

    def probability(x):
        p = x.reshape(len(x), -1).mean(axis=1)
        return np.stack([p, 1 - p], axis=1)

    d = faithfulness.curves(probability, images, heat, np.zeros(3), mode="deletion", num_steps=4)
    np.testing.assert_allclose(d, np.tile([1, 0.75, 0.5, 0.25, 0], (3, 1)), atol=1e-6)
    np.testing.assert_allclose(faithfulness.auc(d), 0.5, atol=1e-6)
    # insertion on a constant image starts from a blur of it (the same image): flat at 1
    ins = faithfulness.curves(probability, images, heat, np.zeros(3), mode="insertion", num_steps=4)
    np.testing.assert_allclose(ins, 1.0, atol=1e-6)


def test_deletion_removes_the_most_important_pixels_first():
    images = np.zeros((1, 4, 4, 1), np.float32)
    images[0, 0, 0] = 1.0  # the only evidence
    heat = np.zeros((1, 4, 4), np.float32)
    heat[0, 0, 0] = 1.0

    def probability(x):
        p = x[:, 0, 0, 0]
        return np.stack([p, 1 - p], axis=1)

    d = faithfulness.curves(probability, images, heat, np.zeros(1), mode="deletion", num_steps=16)
    assert d[0, 0] == 1 and (d[0, 1:] == 0).all()
    # a map pointing elsewhere deletes the evidence last
    bad = 1 - heat
    d_bad = faithfulness.curves(
        probability, images, bad, np.zeros(1), mode="deletion", num_steps=16
    )
    assert faithfulness.auc(d_bad)[0] > faithfulness.auc(d)[0]


def test_num_steps_and_baseline_matter():
    rng = np.random.default_rng(0)
    images = rng.random((2, 8, 8, 3)).astype(np.float32)
    heat = rng.random((2, 8, 8)).astype(np.float32)

    def probability(x):
        p = np.clip(x.reshape(len(x), -1).mean(axis=1), 0, 1)
        return np.stack([p, 1 - p], axis=1)

    a = faithfulness.curves(probability, images, heat, np.zeros(2), mode="deletion", num_steps=4)
    b = faithfulness.curves(probability, images, heat, np.zeros(2), mode="deletion", num_steps=8)
    c = faithfulness.curves(
        probability, images, heat, np.zeros(2), mode="deletion", num_steps=4, baseline="mean"
    )
    assert a.shape == (2, 5) and b.shape == (2, 9)
    assert not np.allclose(a, c)


def test_rankdata_averages_ties():
    np.testing.assert_array_equal(sanity.rankdata(np.array([10, 20, 20, 5])), [2, 3.5, 3.5, 1])


def test_spearman_by_hand():
    a = np.array([[1, 2, 3, 4, 5]], np.float32)
    b = np.array([[5, 6, 7, 8, 7]], np.float32)
    # ranks b = 1, 2, 3.5, 5, 3.5; deviations (-2,-1,0,1,2) and (-2,-1,.5,2,.5): 8 / sqrt(10 * 9.5)
    np.testing.assert_allclose(sanity.spearman(a, b), [8 / np.sqrt(95)], rtol=1e-6)
    np.testing.assert_allclose(sanity.spearman(a, a), [1.0])
    np.testing.assert_allclose(sanity.spearman(a, -a), [-1.0])
    assert sanity.spearman(a, np.zeros_like(a))[0] == 0.0  # constant map: 0, never NaN


def test_ssim_by_hand():
    x = np.random.default_rng(0).random((2, 16, 16))
    np.testing.assert_allclose(sanity.ssim(x, x), 1.0, atol=1e-9)
    # two constant images: only the luminance term remains, (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    a, b = np.full((1, 16, 16), 0.2), np.full((1, 16, 16), 0.7)
    c1 = 0.01**2
    np.testing.assert_allclose(
        sanity.ssim(a, b), [(2 * 0.2 * 0.7 + c1) / (0.04 + 0.49 + c1)], rtol=1e-5
    )
    noisy = np.clip(x + np.random.default_rng(1).normal(0, 0.3, x.shape), 0, 1)
    assert (sanity.ssim(x, noisy) < 0.9).all()


def test_edge_detector_ignores_the_model(cnn, images):
    e1 = xai.explain(cnn, images, EDGE_DETECTOR)
    e2 = xai.explain(testing.functional_cnn(seed=5), images, EDGE_DETECTOR)
    np.testing.assert_array_equal(e1.heatmap, e2.heatmap)


def test_xai_audit_is_callable_and_still_a_package():
    import xai.audit.localisation as loc

    assert callable(xai.audit)
    assert loc.pointing_game is pointing_game
    assert "audit" in xai.__all__


# ----------------------------------------------------------------------------------- fast: report


@pytest.fixture(scope="module")
def tiny_report():
    model = testing.functional_cnn(seed=0)
    before = testing.model_fingerprint(model)
    images = testing.random_images(12, seed=3)
    labels = np.arange(12) % 4
    masks = np.zeros((12, 16, 16), bool)
    masks[:, 4:12, 4:12] = True
    report = xai.audit(
        model,
        images,
        labels,
        masks=masks,
        methods=("gradcam", "saliency"),
        class_names=[MALICIOUS, "b&b", 'q"uote', "d"],
        names=[f"{MALICIOUS}{i}.png" for i in range(12)],
        sanity_images=6,
        num_steps=4,
        gallery_size=12,
        progress=False,
    )
    after = testing.model_fingerprint(model)
    return model, before, after, report


def test_audit_never_touches_the_users_weights(tiny_report):
    _, before, after, _ = tiny_report
    for w0, w1 in zip(before["weights"], after["weights"]):
        np.testing.assert_array_equal(w0, w1)
    assert before["configs"] == after["configs"]


def test_report_data_is_json_and_complete(tiny_report, tmp_path):
    report = tiny_report[3]
    data = json.loads(json.dumps(report.to_dict()))
    assert list(data)[0] == "summary"
    assert np.asarray(data["confusion_matrix"]).sum() == 12
    assert set(data["faithfulness"]["methods"]) == {"gradcam", "saliency", "random"}
    assert len(data["sanity"]["layers"]) == 3  # conv1, last_conv, predictions
    assert {f["key"] for f in data["flags"]} == {
        "sanity_randomisation",
        "deletion_vs_random",
        "shortcut",
    }
    assert all("rule" in f and "threshold" in f for f in data["flags"])
    paths = report.save(tmp_path / "r")
    assert {p.name for p in paths} == {"report.html", "report.json"}
    assert json.loads((tmp_path / "r" / "report.json").read_text())["class_names"][0] == MALICIOUS


def _check_html(text: str) -> int:
    """Assert the page is self-contained and every image is a decodable PNG; return the count."""
    assert MALICIOUS not in text and "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:|//)", text), "external URL in report"
    assert "http://" not in text and "https://" not in text
    srcs = re.findall(r"<img [^>]*src=\"([^\"]*)\"", text)
    assert len(srcs) == text.count("<img ")
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        img = cv2.imdecode(
            np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR
        )
        assert img is not None and img.size > 0
    return len(srcs)


def test_report_html_escapes_user_strings_and_embeds_images(tiny_report):
    report = tiny_report[3]
    text = report.to_html()
    assert report.gallery, "the tiny model gets attention off the central mask somewhere"
    n = _check_html(text)
    assert n >= 3 + 2 * len(report.gallery)


def _find_chromium() -> str | None:
    """A headless browser on PATH. The tests install nothing: CI installs Debian's chromium in
    .ci/run; locally, ``apt-get install chromium``."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def headless_screenshot(browser: str, page, tmp_path, *, window: str = "1200,2000"):
    """Load ``page`` in headless ``browser``, screenshot it; assert no console error."""
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            f"--window-size={window}",
            "--enable-logging=stderr",
            "--v=0",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Uncaught" not in proc.stderr and "ERROR:CONSOLE" not in proc.stderr, proc.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 0, proc.stderr[-2000:]
    return shot, proc


def test_report_loads_in_headless_chromium(tiny_report, tmp_path):
    browser = _find_chromium()
    if browser is None:
        pytest.skip(
            "chromium not found (CI installs Debian's chromium in .ci/run; locally: apt-get "
            "install chromium)"
        )
    report = tiny_report[3]
    report.save(tmp_path / "r")
    page = (tmp_path / "r" / "report.html").resolve()
    shot, _ = headless_screenshot(browser, page, tmp_path)
    assert cv2.imread(str(shot)) is not None
    _check_html(page.read_text())


# ----------------------------------------------------------------------------------- slow: oracles


@pytest.fixture(scope="module")
def clean_audit():
    model = keras.saving.load_model(demo.shipped_model_path("shapes_cnn.keras"))
    data = datasets.make_shapes(96, seed=0, split="test")
    return xai.audit(
        model,
        data.images,
        data.labels,
        masks=data.masks,
        methods=("gradcam", "saliency", "guided_backprop", EDGE_DETECTOR),
        class_names=data.class_names,
        sanity_images=32,
        progress=False,
    )


@pytest.fixture(scope="module")
def shortcut_audit():
    model = keras.saving.load_model(demo.shipped_model_path("shortcut_cnn.keras"))
    data = datasets.make_shapes(96, seed=0, variant="shortcut", split="test")
    report = xai.audit(
        model,
        data.images,
        data.labels,
        masks=data.masks,
        methods=("gradcam",),
        class_names=data.class_names,
        sanity_images=16,
        sanity_stages=2,
        progress=False,
    )
    return model, data, report


@pytest.mark.slow
def test_oracles_pass_and_fail_the_randomisation_check(clean_audit):
    flags = {f.method: f.raised for f in clean_audit.flags if f.key == "sanity_randomisation"}
    assert flags == {
        "gradcam": False,
        "saliency": False,
        "guided_backprop": True,
        "edge_detector": True,
    }
    edge = clean_audit.sanity["methods"]["edge_detector"]
    assert min(edge["spearman"]) > 0.99 and min(edge["ssim"]) > 0.99
    # Grad-CAM is class-sensitive: the random-logit map is unlike the predicted class's map
    assert clean_audit.sanity["methods"]["gradcam"]["random_logit_spearman"] < 0.3


@pytest.mark.slow
def test_clean_model_gradcam_beats_random_and_raises_no_shortcut_alarm(clean_audit):
    fa = clean_audit.faithfulness["methods"]
    assert fa["gradcam"]["deletion"]["auc"] < fa["random"]["deletion"]["auc"]
    assert fa["gradcam"]["insertion"]["auc"] > fa["random"]["insertion"]["auc"]
    assert not clean_audit.flag("deletion_vs_random").raised
    assert not clean_audit.shortcut_alarm
    assert clean_audit.localisation["tolerance_px"] == 8  # 64 px input / 8x8 CAM layer
    assert clean_audit.accuracy > 0.9


@pytest.mark.slow
def test_shortcut_model_raises_the_alarm_and_its_gallery_shows_the_marker(shortcut_audit):
    model, data, report = shortcut_audit
    assert report.shortcut_alarm
    assert report.flag("shortcut").value > 0.4
    assert report.gallery
    idx = np.array([g["index"] for g in report.gallery])
    cam = xai.explain(model, data.images[idx], "gradcam")
    on_marker = pointing_game(cam.heatmap, data.marker_masks[idx], tolerance=8)
    assert on_marker.mean() >= 0.75
    text = report.to_html()
    assert text.count("<img ") >= 3 + 2 * len(report.gallery)


@pytest.mark.slow
def test_cli_audit_on_an_image_folder(tmp_path, capsys):
    data = datasets.make_shapes(16, seed=0, variant="shortcut", split="test")
    datasets.save_image_folder(data, tmp_path / "ds")

    def argv(out: str, sanity: str) -> list[str]:
        return [
            "audit",
            str(demo.shipped_model_path("shortcut_cnn.keras")),
            str(tmp_path / "ds" / "images"),
            "--masks",
            str(tmp_path / "ds" / "masks"),
            "--out",
            str(tmp_path / out),
            "--methods",
            "gradcam",
            "--sanity-images",
            sanity,
            "--steps",
            "4",
            "--no-progress",
        ]

    code = cli.main(argv("out", "8"))
    assert code == 0
    out = capsys.readouterr().out
    assert "[FLAG] gradcam: attention falls outside the object" in out
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["summary"]["num_images"] == 16
    assert saved["class_names"] == list(datasets.CLASS_NAMES)
    assert saved["gallery"][0]["name"].endswith(".png")
    assert cli.main(["audit", "m.keras", str(tmp_path), "--methods", "gradcamm"]) == 2
    # As a gate: a raised flag named by --fail-on exits 1 (the report is written all the same).
    gate = argv("gate", "4")
    assert cli.main([*gate, "--fail-on", "shortcut"]) == 1
    assert "failing (--fail-on): shortcut raised" in capsys.readouterr().err
    assert (tmp_path / "gate" / "report.html").exists()
    assert cli.main([*gate, "--fail-on", "shortcutt"]) == 2
    assert "Did you mean 'shortcut'" in capsys.readouterr().err


def test_dollar_signs_in_class_names_are_shown_literally(tmp_path):
    """matplotlib would parse ``usd_$100_$200`` as maths and fail at draw time."""
    from xai.audit.report import render_html

    model = testing.functional_cnn((16, 16, 3), 2)
    x = testing.random_images(6, (16, 16, 3), seed=4)
    y = np.array([0, 1, 0, 1, 0, 1])
    names = ["usd_$100_$200", "eur_$5"]
    report = xai.run_audit(
        model,
        x,
        y,
        class_names=names,
        methods=["gradcam"],
        num_steps=4,
        sanity_images=2,
        sanity_stages=1,
        progress=False,
    )
    html = render_html(report)
    assert "usd_$100_$200" in html
    paths = report.save(tmp_path / "r")
    assert all(p.exists() for p in paths)


def test_confusion_counts_are_white_on_dark_cells():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from xai.audit import report as report_mod

    captured = {}
    real = report_mod._figure_uri

    def keep(fig):
        captured["fig"] = fig
        return real(fig)

    rep = type("R", (), {"confusion": [[9, 1], [0, 8]], "class_names": ("a", "b")})()
    report_mod._figure_uri = keep
    try:
        report_mod._confusion_figure(rep)
    finally:
        report_mod._figure_uri = real
    fig: Figure = captured["fig"]
    colours = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert colours["9"] == "white" and colours["8"] == "white" and colours["0"] == "black"


# ------------------------------------------------------- the deletion flag is a paired test
def _deletion_flag(method_aucs, random_aucs):
    from xai.audit.flags import deletion_flags

    run = type("Run", (), {"method_names": ["m"]})()
    faith = {
        "m": {"deletion": {"auc_per_image": list(method_aucs)}},
        "random": {"deletion": {"auc_per_image": list(random_aucs)}},
    }
    return deletion_flags(run, faith)[0]


def test_deletion_flag_is_raised_for_uninformative_maps_only():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, 32)
    uninformative = _deletion_flag(base + rng.normal(0, 0.01, 32), base)
    better = _deletion_flag(base - 0.1 + rng.normal(0, 0.05, 32), base)
    noisy = _deletion_flag(base + rng.normal(0, 0.1, 32), base)  # cannot tell: not raised
    assert uninformative.raised and "no better than random" in uninformative.message
    assert not better.raised and "beats random" in better.message
    assert not noisy.raised and "inconclusive" in noisy.message
    assert "paired" in uninformative.rule and "-0.03" in uninformative.rule


def test_deletion_flag_needs_a_minimum_sample_and_ignores_order():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, 32)
    method = base + rng.normal(0, 0.01, 32)
    order = rng.permutation(32)
    a, b = _deletion_flag(method, base), _deletion_flag(method[order], base[order])
    assert (a.raised, a.value) == (b.raised, pytest.approx(b.value, abs=1e-12))
    few = _deletion_flag(method[:5], base[:5])
    assert not few.raised and "not tested" in few.message


def test_student_t_quantiles():
    from xai.audit.flags import _t_quantile

    for p, dof, expected in [(0.95, 31, 1.6955), (0.95, 9, 1.8331), (0.975, 5, 2.5706)]:
        assert _t_quantile(p, dof) == pytest.approx(expected, abs=3e-3)
