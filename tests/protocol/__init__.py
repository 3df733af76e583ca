"""Tests of tinkex.protocol, the wire codecs: each module reads as the spec of one message kind."""
