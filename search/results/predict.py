"""Which image files `scripts/predict.py` classifies: the files named and the images below the
folders named (search/cli/predict.py runs it)."""

from __future__ import annotations

from pathlib import Path

from trainable.folders import IMAGE_EXTENSIONS


def image_paths(given: list[str]) -> tuple[list[Path], list[str]]:
    """The image files named or found below the folders named, in order, and a one-line
    problem for each argument that is neither an image file nor a folder with images."""
    paths: list[Path] = []
    problems: list[str] = []
    for text in given:
        path = Path(text)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                kinds = ", ".join(IMAGE_EXTENSIONS[:4])
                problems.append(f"folder {path} holds no images ({kinds}, ...)")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            problems.append(f"no image or folder at {path}")
    return paths, problems
