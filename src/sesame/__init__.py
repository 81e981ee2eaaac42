"""sesame: port knocking for Linux, gating a real nftables firewall."""

from sesame.basics import Port, parse_port
from sesame.config import Config, Server
from sesame.doors import Door
from sesame.engine import Engine, Knock
from sesame.errors import ConfigError, FirewallError, RemoteError, SesameError

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "Door",
    "Engine",
    "FirewallError",
    "Knock",
    "Port",
    "RemoteError",
    "Server",
    "SesameError",
    "__version__",
    "parse_port",
]
