"""The package version, read by the User-Agent and X-Stainless-Package-Version headers."""

__version__ = "0.1.0"
