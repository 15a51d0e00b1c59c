"""Driver-side file operations on the tables directory, through Spark's own filesystem.

Tables are written by Spark, so the driver must see them the way Spark does:
the same ``s3a://`` or ``abfss://`` or ``dbfs:/`` paths, the same credentials.
The Hadoop FileSystem API reached through the session's JVM gives exactly
that. Only small control files (markers, the catalog script) are written here.
"""

from __future__ import annotations


class HadoopFS:
    """A thin wrapper over ``org.apache.hadoop.fs.FileSystem`` for one session."""

    def __init__(self, spark) -> None:
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _path(self, path: str):
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def _fs(self, path: str):
        return self._path(path).getFileSystem(self._conf)

    def qualify(self, path: str) -> str:
        """Absolute, scheme-qualified form (``/x`` → ``file:/x``)."""
        jpath = self._path(path)
        return str(jpath.getFileSystem(self._conf).makeQualified(jpath).toString())

    def exists(self, path: str) -> bool:
        return bool(self._fs(path).exists(self._path(path)))

    def list(self, path: str) -> list[tuple[str, bool]]:
        """``(name, is_dir)`` for each entry of a folder; empty when it does not exist."""
        if not self.exists(path):
            return []
        return [
            (str(status.getPath().getName()), bool(status.isDirectory()))
            for status in self._fs(path).listStatus(self._path(path))
        ]

    def mkdirs(self, path: str) -> None:
        self._fs(path).mkdirs(self._path(path))

    def rename(self, src: str, dst: str) -> bool:
        return bool(self._fs(src).rename(self._path(src), self._path(dst)))

    def delete(self, path: str) -> None:
        self._fs(path).delete(self._path(path), True)

    def write_text(self, path: str, text: str) -> None:
        """Write a small file whole (to a temporary name, then rename into place)."""
        temporary = path + ".tmp"
        stream = self._fs(temporary).create(self._path(temporary), True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        if self.exists(path):
            self.delete(path)
        self.rename(temporary, path)

    def read_text(self, path: str) -> str:
        stream = self._fs(path).open(self._path(path))
        try:
            reader = self._jvm.java.io.BufferedReader(
                self._jvm.java.io.InputStreamReader(stream, "UTF-8")
            )
            lines = []
            line = reader.readLine()
            while line is not None:
                lines.append(line)
                line = reader.readLine()
            return "\n".join(lines)
        finally:
            stream.close()
