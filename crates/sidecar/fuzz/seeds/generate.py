#!/usr/bin/env python3
"""Writes the seeds of the `remote_read` fuzz target into remote_read/.

Each seed is one byte choosing how the fuzz target cuts the rest into pieces, then a remote
read answer: streamed frames (`uvarint length | CRC32C big endian | ChunkedReadResponse`) or a
snappy-compressed SAMPLES `ReadResponse`. Protobuf and snappy are written by hand (literals
only) so that this needs nothing but Python.
"""

import os
import struct


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def uvarint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number, wire_type, payload):
    key = uvarint(number << 3 | wire_type)
    if wire_type == 0:
        return key + uvarint(payload & 0xFFFFFFFFFFFFFFFF)
    if wire_type == 1:
        return key + payload
    return key + uvarint(len(payload)) + payload


def label(name, value):
    return field(1, 2, name.encode()) + field(2, 2, value.encode())


def labels(pairs):
    return b"".join(field(1, 2, label(name, value)) for name, value in pairs)


# Bytes standing in for an XOR chunk: the sidecar passes chunk bodies on without decoding them.
XOR_CHUNK = bytes.fromhex("0002d00f3ff000000000000003e8d00000")


def chunk(min_time, max_time, data):
    return (
        field(1, 0, min_time)
        + field(2, 0, max_time)
        + field(3, 0, 1)
        + field(4, 2, data)
    )


def chunked_series(pairs, chunks):
    body = labels(pairs)
    for chunk_bytes in chunks:
        body += field(2, 2, chunk_bytes)
    return body


def frame(series_list):
    message = b"".join(field(1, 2, series) for series in series_list) + field(2, 0, 0)
    return uvarint(len(message)) + struct.pack(">I", crc32c(message)) + message


def snappy_literal(data):
    out = bytearray(uvarint(len(data)))
    position = 0
    while position < len(data):
        piece = data[position : position + 60]
        out.append((len(piece) - 1) << 2)
        out += piece
        position += len(piece)
    return bytes(out)


def sample(value, timestamp):
    return field(1, 1, struct.pack("<d", value)) + field(2, 0, timestamp)


def samples_answer():
    series = [
        labels([("__name__", "up"), ("job", "b")])
        + b"".join(field(2, 2, sample(float(i), i * 1000)) for i in range(3)),
        labels([("__name__", "up"), ("job", "a")]) + field(2, 2, sample(1.0, 5000)),
    ]
    result = b"".join(field(1, 2, one) for one in series)
    return snappy_literal(field(1, 2, result))


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "remote_read")
    os.makedirs(out, exist_ok=True)
    one = chunk(1000, 2000, XOR_CHUNK)
    streamed = (
        frame([chunked_series([("__name__", "m"), ("replica", "a")], [one])])
        + frame([chunked_series([("__name__", "m"), ("instance", "x"), ("replica", "a")], [one])])
        # One series split over two frames.
        + frame([chunked_series([("__name__", "m"), ("instance", "x"), ("replica", "a")], [one])])
        + frame(
            [
                chunked_series([("__name__", "n"), ("replica", "a")], [one]),
                chunked_series([("__name__", "n"), ("job", "j"), ("replica", "a")], [one, one]),
            ]
        )
    )
    seeds = {
        "streamed-prefix-and-split": b"\x00" + streamed,
        "streamed-byte-by-byte": b"\x10" + streamed,
        "streamed-truncated": b"\x03" + streamed[:-7],
        "streamed-collision": b"\x05"
        + frame([chunked_series([("__name__", "m"), ("replica", "b")], [one])])
        + frame([chunked_series([("__name__", "m"), ("a", "x"), ("replica", "a")], [one])]),
        "samples": b"\x00" + samples_answer(),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as seed:
            seed.write(data)


if __name__ == "__main__":
    main()
