"""What the app shows of a job's answer, as plain functions of plain data (``app.options`` builds what the job gives
``run_inference``).

The upload form's "annotated" choice resolved by the video's length, the name recorded in predictions.json, the
result files as paths inside the job folder (the only ones ever served), the events document of the result page,
and an error in the user's words (the upload by its own name, no server paths).
"""

from __future__ import annotations

from pathlib import Path

# "auto": uploads longer than this get a highlight reel (step 5's: 10 % of the match, at most 5 minutes, no slow
# motion), not the whole match (decoded and encoded at the source's resolution: about as long as detection itself)
AUTO_HIGHLIGHTS_AFTER_S = 600
# The files of a finished job the app serves, by name (keys of run_inference's result); nothing else is served.
RESULT_FILES = ("video", "predictions", "events_csv", "results_spotting", "timeline", "scores")


def _annotated_kind(kind: str, video: Path) -> str:
    """The upload form's "annotated" choice, with "auto" resolved by the video's length."""
    if kind != "auto":
        return kind
    from util.video import probe_video

    try:
        return "highlights" if probe_video(video).duration_s > AUTO_HIGHLIGHTS_AFTER_S else "full"
    except Exception:  # noqa: BLE001 - an unreadable upload: inference reports what is wrong with it
        return "full"


def _relative_files(result: dict, folder: Path) -> dict[str, str]:
    """run_inference's output paths, as paths relative to the job folder (the only ones ever served)."""
    root = folder.resolve()
    files = {}
    for name in RESULT_FILES:
        value = result.get(name)
        if not value:
            continue
        path = Path(value).resolve()
        if path.is_relative_to(root) and path.is_file():
            files[name] = path.relative_to(root).as_posix()
    return files


def _user_message(message: str, folder: Path, status: dict) -> str:
    """An error as the user should read it: the uploaded file by its own name, no server paths."""
    name = str(status.get("original_name") or "the video")
    for root in {folder, folder.resolve()}:
        message = message.replace(str(root / status["upload"]), name).replace(str(root) + "/", "")
    return message


def _video_name(status: dict) -> str:
    """The id recorded in predictions.json: the client's file name without extension (never used as a path)."""
    stem = Path(str(status.get("original_name") or "")).stem.strip()
    return stem.replace("/", "_").replace("\\", "_") or "video"


def _events_document(result: dict) -> dict:
    """Events with ``video_time_s``, their time in the annotated video (slow motion stretches its clock; the video
    may run at the source's frame rate), as ``run_inference`` rendered it; the match time without a video. Events
    a highlight reel leaves out (not of its classes or team, or not among the best-scoring that fit its length:
    their frame is not in the video, so they have no ``video_time_s``) have ``in_reel`` false."""
    fps, num_frames = float(result["fps"]), int(result["num_frames"])
    events = [dict(e) for e in result.get("events") or []]
    times = result.get("video_times_s") or [int(e["frame"]) / fps for e in events]
    chosen = result.get("in_reel")
    for i, (event, seconds) in enumerate(zip(events, times, strict=True)):
        if seconds is not None:
            event["video_time_s"] = round(float(seconds), 4)
        if (chosen is not None and i < len(chosen) and not chosen[i]) or seconds is None:
            event["in_reel"] = False
    return {
        "fps": fps,
        "num_frames": num_frames,
        "video_frames": result.get("video_frames"),
        "events": events,
        "ground_truth_summary": result.get("ground_truth_summary"),
    }


def served_file(folder: Path, status: dict, name: str) -> Path | None:
    """Path of a finished job's result file ``name`` (one of RESULT_FILES), only if it lies in the job folder."""
    if status.get("state") != "done" or name not in RESULT_FILES:
        return None
    rel = (status.get("files") or {}).get(name)
    if not rel:
        return None
    root = folder.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path
