import json
import math

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.stats import percentileofscore
from skimage.transform import SimilarityTransform

from audit.align import align_face
from audit.analysis import FaceAnalyzer
from audit.quality import (
    LIGHTQNET_TEMPLATE,
    QUALITY_MEASURE_UNITS,
    LightQNetQuality,
    edc_curves,
    lightqnet_crop,
    lightqnet_crops,
    lightqnet_input,
    lightqnet_points,
    percentile_against,
    quality_by_group,
    quality_measures,
    similarity_transform,
)
from audit.registry import ModelError
from audit.sensors import luma

# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightqnet(registry) -> LightQNetQuality:
    return LightQNetQuality(registry)


@pytest.fixture(scope="module")
def faces(t1_rgb, t1_faces, tom_hanks_rgb, detector):
    """Seven clean faces: (images, kps (7, 5, 2), face widths in px). Tom Hanks, then t1's six."""
    (tom,) = detector.detect_all(tom_hanks_rgb)[:1]
    images = [tom_hanks_rgb] + [t1_rgb] * len(t1_faces)
    kps = np.stack([tom.kps] + [f.kps for f in t1_faces])
    widths = [float(d.bbox[2] - d.bbox[0]) for d in [tom, *t1_faces]]
    return images, kps, widths


def blurred(image: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def down_and_up(image: np.ndarray, face_width: float, size: int = 16) -> np.ndarray:
    """The whole image shrunk until the face is ``size`` px wide, then enlarged back."""
    factor = size / face_width
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)


# --- LightQNet: alignment and preprocessing ----------------------------------------------------


def test_similarity_transform_recovers_a_known_transform_and_agrees_with_skimage():
    angle, scale, shift = math.radians(20), 1.7, np.array([12.0, -5.0])
    rotation = scale * np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    src = np.array([[10.0, 20.0], [40.0, 18.0], [25.0, 50.0]])
    dst = src @ rotation.T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix, np.hstack([rotation, shift[:, None]]), atol=1e-9)

    noisy = dst + np.random.default_rng(0).normal(0, 2.0, dst.shape)
    reference = SimilarityTransform()
    reference.estimate(src, noisy)
    np.testing.assert_allclose(similarity_transform(src, noisy), reference.params[:2], atol=1e-9)


def test_lightqnet_points_are_the_eyes_and_the_mouth_centre():
    kps = np.array([[30, 40], [60, 41], [45, 55], [34, 70], [58, 72]], dtype=np.float32)
    np.testing.assert_allclose(lightqnet_points(kps), [[30, 40], [60, 41], [46, 71]])


def test_the_crop_puts_eyes_and_mouth_centre_on_the_lightqnet_template():
    # A 300x300 image with three bright dots where the keypoints say eyes and mouth centre are.
    image = np.zeros((300, 300, 3), np.uint8)
    kps = np.array([[120, 130], [180, 126], [150, 160], [128, 200], [176, 198]], dtype=np.float64)
    for x, y in lightqnet_points(kps):
        cv2.circle(image, (round(x), round(y)), 3, (255, 255, 255), -1)
    crop = lightqnet_crop(image, kps)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    grey = crop[..., 0].astype(np.float64)
    for x, y in LIGHTQNET_TEMPLATE:  # each dot's centre of mass lands on its template point
        x0, y0 = round(x), round(y)
        window = grey[y0 - 5 : y0 + 6, x0 - 5 : x0 + 6]
        ys, xs = np.mgrid[y0 - 5 : y0 + 6, x0 - 5 : x0 + 6]
        assert window.sum() > 0
        centre = (np.sum(xs * window) / window.sum(), np.sum(ys * window) / window.sum())
        assert centre == pytest.approx((x, y), abs=0.6)


def test_the_network_input_is_bgr_scaled_around_128():
    crop = np.zeros((1, 96, 96, 3), np.uint8)
    crop[0, 0, 0] = (255, 128, 0)  # RGB
    x = lightqnet_input(crop)
    assert x.shape == (1, 96, 96, 3) and x.dtype == np.float32  # NHWC
    np.testing.assert_array_equal(x[0, 0, 0], [-1.0, 0.0, 127.0 / 128.0])  # B, G, R
    assert np.all(x[0, 1:] == -1.0)
    with pytest.raises(ValueError, match="96"):
        lightqnet_input(np.zeros((1, 112, 112, 3), np.uint8))


def test_scores_equal_the_model_on_an_independently_built_input(lightqnet, t1_rgb, t1_faces):
    """Alignment by skimage, BGR by cv2, scaling by hand: the whole recipe of MODELS.md."""
    bgr = cv2.cvtColor(t1_rgb, cv2.COLOR_RGB2BGR)  # t1 is large: no upscaling applies
    crops = []
    for face in t1_faces:
        k = face.kps.astype(np.float64)
        points = np.array([k[0], k[1], (k[3] + k[4]) / 2])
        template = np.array([[34.19, 46.16], [65.65, 45.98], [50.12, 82.40]]) * 96 / 100
        tform = SimilarityTransform()
        tform.estimate(points, template)
        crops.append(cv2.warpAffine(bgr, tform.params[:2], (96, 96)))
    x = (np.stack(crops).astype(np.float32) - 128.0) / 128.0
    expected = lightqnet._runner.session.run(None, {"input:0": x})[0][:, 0]
    kps = np.stack([f.kps for f in t1_faces])
    np.testing.assert_allclose(lightqnet.score([t1_rgb] * len(kps), kps), expected, atol=1e-5)


def test_small_images_are_upscaled_before_the_warp_like_the_arcface_crop(lightqnet, faces):
    images, kps, _ = faces
    tom, tom_kps = images[0], kps[0]  # 112 px: upscaled to 128 first
    up = cv2.resize(tom, (128, 128), interpolation=cv2.INTER_CUBIC)
    scaled = (tom_kps.astype(np.float64) + 0.5) * (128 / 112) - 0.5
    np.testing.assert_array_equal(lightqnet_crop(tom, tom_kps), lightqnet_crop(up, scaled))


# --- LightQNet: behaviour on real faces --------------------------------------------------------


def test_a_clean_face_beats_its_gaussian_blurred_copy_in_every_pair(lightqnet, faces):
    images, kps, _ = faces
    clean = lightqnet.score(images, kps)
    blurry = lightqnet.score([blurred(im) for im in images], kps)
    assert clean.shape == (7,) and clean.dtype == np.float32
    assert np.all(clean > blurry), (clean, blurry)


def test_a_clean_face_beats_its_16_px_down_and_up_copy_in_every_pair(lightqnet, faces):
    images, kps, widths = faces
    clean = lightqnet.score(images, kps)
    coarse = lightqnet.score(
        [down_and_up(im, w) for im, w in zip(images, widths, strict=True)], kps
    )
    assert np.all(clean > coarse), (clean, coarse)


def test_scores_on_crops_match_the_reference_means_of_models_md(lightqnet, faces):
    """MODELS.md: clean photos about 0.58, Gaussian blur sigma 3 about 0.12, 16-px down-and-up
    about 0.12 (degradations applied to the 96-px crop)."""
    crops = lightqnet_crops(*faces[:2])
    blur = np.stack([blurred(c) for c in crops])
    coarse = np.stack(
        [cv2.resize(cv2.resize(c, (16, 16), interpolation=cv2.INTER_AREA), (96, 96)) for c in crops]
    )
    assert 0.50 < lightqnet.score_crops(crops).mean() < 0.66
    assert lightqnet.score_crops(blur).mean() < 0.25
    assert lightqnet.score_crops(coarse).mean() < 0.25


def test_a_wrong_channel_order_or_scaling_changes_the_scores_measurably(lightqnet, faces):
    """Guards the constants: each classic mistake moves the numbers well beyond float noise."""
    crops = lightqnet_crops(*faces[:2])
    run = lightqnet._runner.run
    right = run(lightqnet_input(crops))[:, 0]
    np.testing.assert_allclose(right, lightqnet.score_crops(crops), atol=1e-6)
    as_rgb = run((crops.astype(np.float32) - 128) / 128)[:, 0]  # channel order not swapped
    unit = run(crops[..., ::-1].astype(np.float32) / 255)[:, 0]  # 0..1 instead of -1..1
    raw = run(crops[..., ::-1].astype(np.float32))[:, 0]  # not scaled at all
    # t1's faces are in colour (Tom Hanks is grey, so his score ignores the order).
    assert np.abs(as_rgb - right).max() > 0.01
    assert np.abs(unit - right).max() > 0.05
    assert raw.mean() < 0.3 < right.mean()


def test_faces_not_found_score_nan(lightqnet, faces):
    images, kps, _ = faces
    kps = kps[:3].astype(np.float64).copy()
    kps[1] = np.nan
    scores = lightqnet.score(images[:3], kps)
    assert np.isnan(scores[1]) and np.all(np.isfinite(scores[[0, 2]]))
    assert lightqnet.score([], np.zeros((0, 5, 2))).shape == (0,)
    with pytest.raises(ValueError, match="kps"):
        lightqnet.score(images[:3], kps[:2])


def test_it_records_the_weights_and_licence(lightqnet, registry):
    spec = registry.spec("lightqnet")
    assert lightqnet.weights_sha256 == spec.sha256 and lightqnet.licence == spec.licence


# --- FaceAnalyzer with a quality model ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_faces(faces, t1_rgb, t1_faces, tom_hanks_rgb):
    """64-px face crops like the generator's, plus a grey image (no face) second."""
    out = [cv2.resize(tom_hanks_rgb, (64, 64), interpolation=cv2.INTER_AREA)]
    out.append(np.full((64, 64, 3), 128, np.uint8))
    for face in t1_faces:
        x1, y1, x2, y2 = face.bbox.astype(int)
        out.append(cv2.resize(t1_rgb[y1:y2, x1:x2], (64, 64), interpolation=cv2.INTER_AREA))
    return out


@pytest.fixture(scope="module")
def quality_analyzer(registry):
    return FaceAnalyzer(registry, quality="lightqnet")


@pytest.fixture(scope="module")
def quality_batch(quality_analyzer, small_faces):
    return quality_analyzer.analyze(small_faces)


def test_an_analyzer_with_lightqnet_fills_the_quality_field(
    quality_analyzer, quality_batch, small_faces, lightqnet, registry
):
    batch = quality_batch
    assert batch.quality.shape == (len(small_faces),) and batch.quality.dtype == np.float32
    assert not batch.face_found[1] and batch.face_found.sum() >= 6
    assert np.all(np.isnan(batch.quality[~batch.face_found]))
    assert np.all(np.isfinite(batch.quality[batch.face_found]))
    by_hand = lightqnet.score(
        small_faces, np.where(batch.face_found[:, None, None], batch.kps, np.nan)
    )
    np.testing.assert_allclose(batch.quality, by_hand, atol=1e-6, equal_nan=True)
    assert batch.models["lightqnet"] == registry.spec("lightqnet").sha256
    with pytest.raises(ValueError):
        batch.quality[0] = 1.0  # read-only like every result


def test_a_row_carries_quality_as_a_float_or_none(quality_batch):
    row, empty = quality_batch.row(0), quality_batch.row(1)
    assert isinstance(row["quality"], float) and empty["quality"] is None
    json.dumps(row)


def test_the_default_analyzer_has_no_quality_model_and_a_nan_column(registry, small_faces):
    analyzer = FaceAnalyzer(registry)
    assert analyzer.quality is None and "lightqnet" not in analyzer.models
    batch = analyzer.analyze(small_faces[:2])
    assert batch.quality.shape == (2,) and np.all(np.isnan(batch.quality))
    assert batch.row(0)["quality"] is None


def test_an_unknown_quality_model_names_the_choices(registry):
    with pytest.raises(ModelError, match="lightqnet"):
        FaceAnalyzer(registry, quality="serfiq")


# --- ISO/IEC 29794-5-style measures ------------------------------------------------------------


def test_quality_measures_follow_their_definitions(quality_batch, small_faces):
    table = quality_measures(quality_batch, small_faces)
    assert list(table.index) == list(range(len(small_faces)))
    assert set(QUALITY_MEASURE_UNITS) == set(table.columns) - {"face_found"}
    found = quality_batch.face_found
    np.testing.assert_array_equal(table["face_found"], found)
    assert table.loc[~found].drop(columns="face_found").isna().all().all()

    i = 0  # Tom Hanks, found
    kps = quality_batch.kps[i].astype(np.float64)
    assert table.loc[i, "inter_eye_distance"] == pytest.approx(np.hypot(*(kps[1] - kps[0])))
    region = luma(align_face(small_faces[i], kps)[32:104, 24:88]).astype(np.float64)
    assert table.loc[i, "luminance_mean"] == pytest.approx(region.mean())
    assert table.loc[i, "luminance_std"] == pytest.approx(region.std())
    for name in ("sharpness", "illumination_uniformity", "yaw", "quality"):
        np.testing.assert_allclose(table[name], getattr(quality_batch, name), rtol=1e-6)


def test_luminance_measures_move_with_exposure_and_contrast(quality_batch, small_faces):
    index = np.array([0, 1, 2])
    images = [small_faces[i] for i in index]
    normal = quality_measures(_Rows(quality_batch, index), images)
    dim = [(im.astype(np.float64) * 0.5).round().astype(np.uint8) for im in images]
    darker = quality_measures(_Rows(quality_batch, index), dim)
    assert darker.loc[0, "luminance_mean"] == pytest.approx(
        normal.loc[0, "luminance_mean"] / 2, abs=1
    )
    assert darker.loc[0, "luminance_std"] == pytest.approx(
        normal.loc[0, "luminance_std"] / 2, abs=1
    )


class _Rows:
    """A stand-in for an AnalysisBatch holding some of its rows (what quality_measures reads)."""

    def __init__(self, batch, index):
        fields = (
            "face_found",
            "kps",
            "sharpness",
            "sharpness_normalised",
            "illumination_uniformity",
            "yaw",
            "pitch",
            "roll",
            "quality",
        )
        self.__dict__.update({name: np.asarray(getattr(batch, name))[index] for name in fields})

    def __len__(self):
        return len(self.face_found)


def test_quality_measures_take_image_ids_as_index(quality_batch, small_faces):
    ids = [100 + i for i in range(len(small_faces))]
    assert list(quality_measures(quality_batch, small_faces, index=ids).index) == ids
    with pytest.raises(ValueError, match="images"):
        quality_measures(quality_batch, small_faces[:-1])
    with pytest.raises(ValueError, match="index"):
        quality_measures(quality_batch, small_faces, index=ids[:-1])


# --- percentile ranks --------------------------------------------------------------------------


def test_percentile_against_matches_scipy_weak_with_ties_and_out_of_range_values():
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 10, 57).astype(float)  # many ties
    values = np.concatenate([rng.integers(-2, 13, 40).astype(float), [0, 9, 4.5]])
    expected = [percentileofscore(reference, v, kind="weak") for v in values]
    np.testing.assert_allclose(percentile_against(values, reference), expected, atol=1e-12)


def test_percentile_against_ignores_nan_in_the_reference_and_keeps_nan_values():
    ranks = percentile_against(np.array([np.nan, 2.0, 5.0]), np.array([1.0, 2.0, np.nan, 3.0, 4.0]))
    assert np.isnan(ranks[0]) and ranks[1] == 50.0 and ranks[2] == 100.0
    with pytest.raises(ValueError, match="reference"):
        percentile_against(np.array([1.0]), np.array([np.nan]))


# --- quality by group --------------------------------------------------------------------------


def test_quality_by_group_counts_and_quartiles_agree_with_naive_masks():
    rng = np.random.default_rng(5)
    table = pd.DataFrame(
        {"group": rng.choice(["a", "b", "c"], 200), "quality": rng.uniform(0, 1, 200)}
    )
    table.loc[rng.choice(200, 15, replace=False), "quality"] = np.nan
    table.loc[0, "quality"] = 0.4  # a value exactly at the threshold is not below it
    result = quality_by_group(table, "quality", 0.4)
    assert list(result.index) == ["a", "b", "c"] and result.index.name == "group"
    for group, row in result.iterrows():
        values = table.loc[table["group"] == group, "quality"]
        present = values.dropna().to_numpy()
        assert row["n"] == len(present) and row["n_missing"] == values.isna().sum()
        assert row["mean"] == pytest.approx(present.mean())
        assert (row["q25"], row["median"], row["q75"]) == pytest.approx(
            tuple(np.percentile(present, [25, 50, 75]))
        )
        assert row["below"] == sum(v < 0.4 for v in present)
        assert row["share_below"] == pytest.approx(row["below"] / len(present))
    assert result.attrs == {"measure": "quality", "threshold": 0.4}


def test_quality_by_group_gives_nan_for_a_group_without_values():
    table = pd.DataFrame({"group": ["a", "a", "b"], "q": [0.2, 0.8, np.nan]})
    result = quality_by_group(table, "q", 0.5)
    assert result.loc["a", "share_below"] == 0.5 and result.loc["b", "n"] == 0
    assert result.loc["b", "n_missing"] == 1 and math.isnan(result.loc["b", "share_below"])
    with pytest.raises(ValueError, match="missing column"):
        quality_by_group(table, "quality", 0.5)


# --- error-versus-discard curves ---------------------------------------------------------------


def _hand_made_audit():
    """Two groups, one identity each: baseline + four variants. Threshold 0.5.

    Group a: baseline 1 (q 0.9); variants 2 (q 0.1, score 0.1: error), 3 (q 0.2, score 0.2:
    error), 4 (q 0.8), 5 (q 0.7). Group b: baseline 6 (q 0.95); variants 7 (q 0.3, score 0.1:
    error), 8 (q 0.6), 9 (q 0.65), 10 (q 0.85). Images by quality: 2, 3, 7, 8, 9, 5, 4, 10, 1, 6.
    """
    rows = [
        (1, 2, "a", 0.1),
        (1, 3, "a", 0.2),
        (1, 4, "a", 0.9),
        (1, 5, "a", 0.9),
        (6, 7, "b", 0.1),
        (6, 8, "b", 0.9),
        (6, 9, "b", 0.9),
        (6, 10, "b", 0.9),
    ]
    mated = pd.DataFrame(rows, columns=["image_a", "image_b", "group_a", "score"])
    mated["group_b"], mated["mated"] = mated["group_a"], True
    impostors = pd.DataFrame(  # non-mated rows take no part (and carry no quality)
        {
            "image_a": [1, 99],
            "image_b": [6, 98],
            "group_a": ["a", "a"],
            "group_b": ["b", "a"],
            "score": [0.99, 0.01],
            "mated": [False, False],
        }
    )
    quality = {1: 0.9, 2: 0.1, 3: 0.2, 4: 0.8, 5: 0.7, 6: 0.95, 7: 0.3, 8: 0.6, 9: 0.65, 10: 0.85}
    return pd.concat([mated, impostors], ignore_index=True), quality


def test_edc_curves_on_a_hand_made_audit_follow_the_known_curve():
    comparisons, quality = _hand_made_audit()
    curves = edc_curves(comparisons, quality, 0.5)
    assert list(curves.columns[:4]) == ["group", "fraction", "fnmr", "n_mated"]
    a = curves[curves["group"] == "a"].set_index("fraction")
    b = curves[curves["group"] == "b"].set_index("fraction")
    np.testing.assert_allclose(a.index, np.linspace(0, 0.5, 11))
    # f:      0    .05  .1   .15  .2   .25  .3   .35  .4   .45  .5   (k = floor(10 f))
    expected_a = [2 / 4, 2 / 4, 1 / 3, 1 / 3, 0, 0, 0, 0, 0, 0, 0]
    expected_b = [1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(a["fnmr"], expected_a)
    np.testing.assert_allclose(b["fnmr"], expected_b)
    assert a["n_mated"].tolist() == [4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert b["n_mated"].tolist() == [4, 4, 4, 4, 4, 4, 3, 3, 2, 2, 1]
    assert a["discarded_images"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5]


def test_edc_discards_every_mated_pair_of_a_discarded_baseline():
    comparisons, quality = _hand_made_audit()
    quality = {**quality, 1: 0.05}  # group a's baseline is now the worst image
    curves = edc_curves(comparisons, quality, 0.5, fractions=[0.0, 0.1])
    a = curves[curves["group"] == "a"].set_index("fraction")
    assert a.loc[0.1, "n_mated"] == 0 and math.isnan(a.loc[0.1, "fnmr"])
    assert curves.loc[curves["group"] == "b", "n_mated"].tolist() == [4, 4]


def test_edc_discards_ties_at_the_cutoff_together():
    comparisons, quality = _hand_made_audit()
    quality = {**quality, 3: 0.1}  # images 2 and 3 tie for the lowest quality
    curves = edc_curves(comparisons, quality, 0.5, fractions=[0.1])
    a = curves[curves["group"] == "a"].iloc[0]
    assert a["discarded_images"] == 2 and a["discarded_fraction"] == 0.2
    assert a["n_mated"] == 2 and a["fnmr"] == 0.0


def test_edc_agrees_with_a_naive_recomputation_on_random_data():
    rng = np.random.default_rng(11)
    n_images = 60
    quality = {i: float(rng.uniform()) for i in range(n_images)}
    identity = rng.integers(0, 12, n_images)
    groups = np.where(identity % 3 == 0, "x", np.where(identity % 3 == 1, "y", "z"))
    pairs = [
        (i, j)
        for i in range(n_images)
        for j in range(i + 1, n_images)
        if identity[i] == identity[j]
    ]
    comparisons = pd.DataFrame(
        {
            "image_a": [i for i, _ in pairs],
            "image_b": [j for _, j in pairs],
            "group_a": [groups[i] for i, _ in pairs],
            "score": rng.uniform(0, 1, len(pairs)),
            "mated": True,
        }
    )
    fractions = [0.0, 0.13, 0.25, 0.5]
    curves = edc_curves(comparisons, quality, 0.3, fractions=fractions)
    used = sorted(set(comparisons["image_a"]) | set(comparisons["image_b"]))
    for f in fractions:
        k = int(math.floor(f * len(used) + 1e-9))
        worst = sorted(quality[i] for i in used)[k - 1] if k else -np.inf
        gone = {i for i in used if quality[i] <= worst}
        for group in ("x", "y", "z"):
            kept = [
                r
                for r in comparisons.itertuples()
                if r.group_a == group and r.image_a not in gone and r.image_b not in gone
            ]
            row = curves[(curves["group"] == group) & (curves["fraction"] == f)].iloc[0]
            assert row["n_mated"] == len(kept)
            if kept:
                assert row["fnmr"] == pytest.approx(np.mean([r.score < 0.3 for r in kept]))


def test_edc_rejects_missing_quality_and_bad_fractions():
    comparisons, quality = _hand_made_audit()
    with pytest.raises(ValueError, match="no quality"):
        edc_curves(comparisons, {k: v for k, v in quality.items() if k != 4}, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        edc_curves(comparisons, {**quality, 4: math.nan}, 0.5)
    with pytest.raises(ValueError, match="fractions"):
        edc_curves(comparisons, quality, 0.5, fractions=[0.1, 1.5])
    series = pd.Series(quality)  # a Series keyed by image id works like a dict
    pd.testing.assert_frame_equal(
        edc_curves(comparisons, series, 0.5), edc_curves(comparisons, quality, 0.5)
    )
