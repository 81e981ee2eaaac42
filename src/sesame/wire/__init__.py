"""Pure encoders and decoders of what crosses the wire and the netlink socket."""

from sesame.wire.packet import Packet, decode

__all__ = ["Packet", "decode"]
