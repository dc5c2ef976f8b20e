"""Where a --storage-path points and whether it can be used: the folder or URI opened with
pyarrow (as Ray opens it), and a marker file written there and removed. Part of preflight:
run once before Ray starts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

import pyarrow.fs

from search.config.settings import is_uri
from trainable.config import error_line


def storage_filesystem(folder: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem and path of a local folder or a URI."""
    if is_uri(folder):
        fs, path = pyarrow.fs.FileSystem.from_uri(folder)
        return fs, path.rstrip("/")
    return pyarrow.fs.LocalFileSystem(), folder


def uri_problems(storage_path: str) -> list[str]:
    """Why Ray could not store experiments at the URI `storage_path` (empty when it can)."""
    try:
        pyarrow.fs.FileSystem.from_uri(storage_path)  # an s3:// URI without ?region= asks AWS
    except ValueError as error:  # pyarrow's ArrowInvalid: an unknown scheme, a malformed URI
        return [
            f"--storage-path must be a local folder or a URI Ray supports (s3://, gs://, ...), "
            f"but {storage_path!r} is neither ({error_line(error)})"
        ]
    except (OSError, NotImplementedError) as error:  # no network or bucket; pyarrow built
        # without that filesystem (ArrowNotImplementedError); HDFS without Java
        return [f"--storage-path {storage_path!r} cannot be opened: {error_line(error)}"]
    return []


@contextmanager
def written_marker(folder: str) -> Iterator[str]:
    """An empty marker file written in the folder or URI `folder` (made if missing) for the
    duration; yields its name. Both are removed afterwards. OSError if it can't be written."""
    fs, path = storage_filesystem(folder)
    marker = f"{path}/.transfer-tune-{uuid.uuid4().hex}"
    made = fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(marker):
        pass
    try:
        yield PurePosixPath(marker).name
    finally:
        fs.delete_file(marker)
        if made:
            fs.delete_dir(path)


def writable_problems(storage_path: str) -> list[str]:
    """Why the driver could not write at the URI `storage_path` (empty when it can): a marker
    file is written there and removed, as Ray's own check does."""
    try:
        with written_marker(storage_path):
            pass
    except OSError as error:  # read-only credentials, no such bucket, no network
        return [f"--storage-path {storage_path!r} cannot be written: {error_line(error)}"]
    return []


def stored_at(uri: str) -> bool:
    """Whether anything is stored at `uri` (OSError if it can't be read)."""
    fs, path = storage_filesystem(uri)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound
