"""Compatibility with the peers: knockd.conf, fwknopd's access.conf, ~/.fwknoprc."""
