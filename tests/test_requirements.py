"""requirements.txt matches the code: what is installed satisfies it, and each floor has what the code uses.

Also: a cached video index (util.video_index) belongs to the PyAV / FFmpeg that demuxed the file.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]

# The first release with what the code calls, and why (from each package's changelog), and its Python floor.
API_FLOORS = {
    # 17.0: VideoReformatter.reformat(threads=) (util/video.py), and sws_scale_frame, which converts the
    # colour matrix between YUV formats (a BT.709 source's JPEG planes, util.video._jpeg_planes). 18.0:
    # reformatting a frame tagged with a reserved transfer or primaries (VP9 and NVDEC output) no longer
    # raises "Operation not supported" (PyAV issue 2208). 18.0 needs Python 3.11.
    "av": (Version("18.0"), (3, 11)),
    # 1.8.0: encode_jpeg_yuv_planes (step 1's 4:2:0 JPEGs, util/extract.py); 1.8.2 fixed its memory access
    # with broadcast rows.
    "simplejpeg": (Version("1.8.2"), (3, 9)),
}


def requirements() -> list[Requirement]:
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    stripped = (line.split("#", 1)[0].strip() for line in lines)
    return [Requirement(line) for line in stripped if line and not line.startswith("-")]


def floor(specifier: SpecifierSet) -> Version | None:
    """The lowest version a specifier admits by its >=, ==, ~= clauses (None when it has none)."""
    bounds = [Version(s.version) for s in specifier if s.operator in (">=", "==", "~=")]
    return max(bounds) if bounds else None


def test_every_installed_package_satisfies_requirements_txt():
    wrong = []
    for requirement in requirements():
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{requirement}: not installed")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            wrong.append(f"{requirement}: {installed} installed")
    assert not wrong, wrong


def test_each_floor_has_the_api_the_code_uses():
    declared = {r.name.lower(): r for r in requirements()}
    for name, (needed, _) in API_FLOORS.items():
        assert name in declared, f"{name} is used (see API_FLOORS) but not in requirements.txt"
        lowest = floor(declared[name].specifier)
        assert lowest is not None and lowest >= needed, f"{declared[name]}: the code needs {name}>={needed}"


def test_the_python_floor_is_one_the_dependency_floors_install_on():
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    requires = re.search(r'^requires-python = "([^"]*)"', text, re.MULTILINE).group(1)
    (major, minor) = map(int, re.fullmatch(r">=\s*(\d+)\.(\d+)", requires).groups())
    for name, (version, python) in API_FLOORS.items():
        assert (major, minor) >= python, f"requires-python {requires}, but {name}>={version} needs {python}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"Python {major}.{minor}+" in readme


def test_the_video_index_cache_is_not_reused_under_another_pyav_or_ffmpeg(
    tmp_path, monkeypatch, make_index_video
):
    import av

    from util import video_index
    from util.video_index import INDEX_CACHE_ENV, VideoIndex

    video = tmp_path / "v.mp4"
    make_index_video(video, fps=25, seconds=1)
    monkeypatch.setenv(INDEX_CACHE_ENV, str(tmp_path / "cache"))
    built = []
    build = VideoIndex.build.__func__

    def counting_build(cls, path):
        built.append(path)
        return build(cls, path)

    monkeypatch.setattr(VideoIndex, "build", classmethod(counting_build))
    first = VideoIndex.load(video)
    assert VideoIndex.load(video).num_source_frames == first.num_source_frames and len(built) == 1  # reused
    monkeypatch.setattr(av, "__version__", "0.0.0")
    VideoIndex.load(video)
    assert len(built) == 2  # another PyAV: built again
    VideoIndex.load(video)
    assert len(built) == 2  # and reused under it
    libraries = dict(av.library_versions, libavformat=(1, 0, 0))
    monkeypatch.setattr(video_index.av, "library_versions", libraries)
    VideoIndex.load(video)
    assert len(built) == 3  # another FFmpeg: built again
