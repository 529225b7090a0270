"""Bad-input accounting: fail on the first bad record, or with --skip-bad count and report them."""

from __future__ import annotations

from dataclasses import dataclass, field

from feredge.errors import DataError


@dataclass
class Problems:
    """Collects bad records; in strict mode the first one raises a one-line DataError."""

    skip_bad: bool = False
    items: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # files/folders that are not data at all (always counted)

    def report(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message + " (pass --skip-bad to skip such records and count them)")
        self.items.append(message)

    def ignore(self, path, why: str) -> None:
        """Not a record (a README, a folder of another layout): never read, always counted and reported."""
        self.ignored.append(f"{path}: {why}")

    def ignored_summary(self) -> str:
        if not self.ignored:
            return ""
        more = f" (+{len(self.ignored) - 3} more)" if len(self.ignored) > 3 else ""
        return (f"ignored {len(self.ignored)} files/folders that are not images of the layout: "
                f"{'; '.join(self.ignored[:3])}{more}")

    def summary(self) -> str:
        if not self.items:
            return "skipped 0 bad records"
        shown = "; ".join(self.items[:3])
        more = f" (+{len(self.items) - 3} more)" if len(self.items) > 3 else ""
        return f"skipped {len(self.items)} bad records: {shown}{more}"
