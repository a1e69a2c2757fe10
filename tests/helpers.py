"""Small helpers shared by several test modules."""

from __future__ import annotations


class LogText(str):
    """Log text from logging (caplog) and from the captured output, which may both hold a line."""

    def __new__(cls, logged: str, printed: str) -> LogText:
        text = super().__new__(cls, logged + "\n" + printed)
        text.sources = (logged, printed)
        return text

    def count(self, sub: str, *args: object) -> int:  # type: ignore[override]
        """Occurrences in the source that has the most (a line echoed to both counts once)."""
        return max(source.count(sub) for source in self.sources)


def forget_tokens() -> None:
    """Empty both IMS token caches: the process's memory and this test's token files (cold start)."""
    import os
    from pathlib import Path

    from airflow_provider_flowservice._auth import TOKEN_CACHE
    from airflow_provider_flowservice._token_file_cache import ENV_DIR

    TOKEN_CACHE.clear()
    directory = Path(os.environ[ENV_DIR])
    if directory.is_dir():
        for entry in directory.iterdir():
            entry.unlink()
