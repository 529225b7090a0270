"""Bad-input accounting: fail on the first bad record, or with --skip-bad count and report them."""

from __future__ import annotations

from dataclasses import dataclass, field

from feredge.errors import DataError


@dataclass
class Problems:
    """Collects bad records; in strict mode the first one raises a one-line DataError."""

    skip_bad: bool = False
    items: list[str] = field(default_factory=list)

    def report(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message + " (pass --skip-bad to skip such records and count them)")
        self.items.append(message)

    def summary(self) -> str:
        if not self.items:
            return "skipped 0 bad records"
        shown = "; ".join(self.items[:3])
        more = f" (+{len(self.items) - 3} more)" if len(self.items) > 3 else ""
        return f"skipped {len(self.items)} bad records: {shown}{more}"
