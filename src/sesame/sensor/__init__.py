"""The sensor: the kernel hands sesame only knock packets, over NFLOG."""

from sesame.sensor.nflog import NflogSensor, SensorError

__all__ = ["NflogSensor", "SensorError"]
