"""The price table of an app (``[billing]`` in nimbus.toml) and what usage costs.

Nimbus bills like AWS Lambda: per request and per GB-second of configured memory ×
billed duration (rounded up to 1 ms), plus data transfer out. The defaults are
Lambda's published x86 on-demand prices (us-east-1, first tier); an app overrides
any of them::

    [billing]
    currency = "USD"
    per_million_requests = 0.20       # AWS Lambda x86: $0.20 per 1M requests
    per_gb_second = 0.0000166667      # AWS Lambda x86: $0.0000166667 per GB-s
    per_gb_out = 0.09                 # AWS data transfer out to the internet: $0.09/GB
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct
from msgspec.structs import asdict

from host.manifest.config_table import ConfigTable, Problems

#: AWS Lambda's published x86 price per million requests (USD)
LAMBDA_X86_PER_MILLION_REQUESTS = 0.20
#: AWS Lambda's published x86 price per GB-second, first tier (USD)
LAMBDA_X86_PER_GB_SECOND = 0.0000166667
#: AWS's published price of data transfer out to the internet, first tier (USD per GB)
AWS_PER_GB_OUT = 0.09


class Prices(Struct, frozen=True):
    """What a request, a GB-second and a GB sent out cost."""

    currency: str = "USD"
    per_million_requests: float = LAMBDA_X86_PER_MILLION_REQUESTS
    per_gb_second: float = LAMBDA_X86_PER_GB_SECOND
    per_gb_out: float = AWS_PER_GB_OUT

    def cost(self, requests: int, gb_s: float, bytes_out: int) -> float:
        return (
            requests / 1_000_000 * self.per_million_requests
            + gb_s * self.per_gb_second
            + bytes_out / (1 << 30) * self.per_gb_out
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_billing(t: ConfigTable) -> Prices:
    """The ``[billing]`` table (every key optional; defaults are Lambda's prices)."""
    d = Prices()
    currency = t.string("currency", d.currency) or d.currency
    if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        t.error("currency", f"expected a 3-letter currency code like 'USD', got {currency!r}")
    prices = Prices(
        currency,
        t.number("per_million_requests", d.per_million_requests),
        t.number("per_gb_second", d.per_gb_second),
        t.number("per_gb_out", d.per_gb_out),
    )
    t.finish()
    return prices


def prices_from_dict(data: dict[str, Any], where: str = "billing") -> Prices:
    """A stored ``Prices.to_dict()`` (or ``{}``: the defaults), checked the same way."""
    problems = Problems(where)
    prices = read_billing(ConfigTable(dict(data), "", problems))
    problems.raise_if_any()
    return prices
