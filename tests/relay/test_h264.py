"""Table tests for kitchencam.relay.h264: literal NAL units first, then real x264 streams."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import av.error
import numpy as np
import pytest

from kitchencam.relay.h264 import (
    START_CODE,
    FixedAccessUnit,
    H264Error,
    H264Profile,
    NalType,
    ParameterSetCache,
    ParameterSets,
    SequenceParameterSet,
    avcc_to_annexb,
    classify_profile,
    is_annexb,
    is_keyframe,
    join_annexb,
    level_name,
    nal_type,
    parse_extradata,
    parse_sps,
    remove_emulation_prevention,
    split_annexb,
)

# --- literal NAL units ---------------------------------------------------------------------------
# SPS/PPS pairs captured from libx264 (see the real-stream tests below, which produce them again).
SPS_CB_322X242 = bytes.fromhex("6742c01fd9015087888884000003000400000300f03c60c920")
SPS_MAIN_322X242 = bytes.fromhex("674d401eeca0a843c44442000003000200000300781e2c5b2c")
SPS_HIGH_1080P = bytes.fromhex("67640028acd940780227e584000003000400000300f03c60c658")
SPS_HIGH_576I = bytes.fromhex("6764001facd940b424d080000003008000001e0f8b16cb")
SPS_HIGH444_322X242 = bytes.fromhex("67f4000d919b282a10f1f1f080000003008000001e078a14cb")
SPS_HIGH422_322X242 = bytes.fromhex("677a000dbcd9415087888f84000003000400000300f03c50a658")
PPS = bytes.fromhex("68ebe3cb20")  # pps_id 0, sps_id 0
SPS = SPS_CB_322X242
PPS_ID1 = b"\x68\x4a\x80"  # ue(1) pps_id, ue(1) sps_id, stop bit
SPS_ID1 = b"\x67\x42\xc0\x1f\x4f\x80"  # profile, flags, level, ue(1) sps_id, then truncated
IDR_FIRST = b"\x65\x88\x84\x00\x21\xff"  # first_mb_in_slice = 0 (first bit 1)
IDR_LATER = b"\x65\x40\x11\x22"  # first_mb_in_slice = 1 ('010')
P_SLICE = b"\x41\x9a\x22\x33"
SEI = b"\x06\x05\x02\xaa\xbb\x80"
AUD = b"\x09\xf0"


def annexb(*nals: bytes, short: bool = False) -> bytes:
    """Join NAL units with 4-byte start codes, or 3-byte ones when ``short``."""
    code = b"\x00\x00\x01" if short else START_CODE
    return b"".join(code + nal for nal in nals)


def avcc(*nals: bytes, size: int = 4) -> bytes:
    """Join NAL units with big-endian length prefixes of ``size`` bytes."""
    return b"".join(len(nal).to_bytes(size, "big") + nal for nal in nals)


# --- framing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(annexb(SPS, PPS, IDR_FIRST), [SPS, PPS, IDR_FIRST], id="4-byte"),
        pytest.param(annexb(SPS, PPS, short=True), [SPS, PPS], id="3-byte"),
        pytest.param(START_CODE + SEI + b"\x00\x00\x01" + IDR_FIRST, [SEI, IDR_FIRST], id="mixed"),
        pytest.param(b"\x00\x00" + annexb(P_SLICE), [P_SLICE], id="leading zero bytes"),
        pytest.param(annexb(P_SLICE) + b"\x00\x00\x00", [P_SLICE], id="trailing zero bytes"),
        pytest.param(b"\xde\xad" + annexb(AUD), [AUD], id="junk before first start code"),
        pytest.param(START_CODE + START_CODE + AUD, [AUD], id="empty nal skipped"),
        pytest.param(b"\x00\x00\x01\x65\x00\x00\x03\x01", [b"\x65\x00\x00\x03\x01"], id="escaped"),
        pytest.param(START_CODE, [], id="start code only"),
        pytest.param(P_SLICE, [], id="no start code"),
        pytest.param(b"", [], id="empty"),
    ],
)
def test_split_annexb(data: bytes, expected: list[bytes]) -> None:
    assert split_annexb(data) == expected


def test_join_annexb_round_trips_through_split() -> None:
    nals = [AUD, SPS_CB_322X242, PPS, SEI, IDR_FIRST]
    joined = join_annexb(nals)
    assert joined.startswith(START_CODE + AUD)
    assert split_annexb(joined) == nals


@pytest.mark.parametrize(
    ("nal", "expected"),
    [
        (SPS_CB_322X242, NalType.SPS),
        (PPS, NalType.PPS),
        (IDR_FIRST, NalType.IDR),
        (P_SLICE, NalType.SLICE),
        (SEI, NalType.SEI),
        (AUD, NalType.AUD),
        (b"\x7c\x85", 28),  # an RTP FU-A indicator byte: not in the enum, still reported
        (b"", 0),
    ],
)
def test_nal_type(nal: bytes, expected: int) -> None:
    assert nal_type(nal) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (annexb(SPS), True),
        (annexb(SPS, short=True), True),
        (avcc(SPS), False),
        (b"\x01\x42", False),
        (b"", False),
    ],
)
def test_is_annexb(data: bytes, expected: bool) -> None:
    assert is_annexb(data) is expected


@pytest.mark.parametrize(
    ("data", "size", "expected"),
    [
        pytest.param(avcc(SEI, IDR_FIRST), 4, annexb(SEI, IDR_FIRST), id="4-byte lengths"),
        pytest.param(avcc(P_SLICE, size=2), 2, annexb(P_SLICE), id="2-byte lengths"),
        pytest.param(avcc(P_SLICE, AUD, size=1), 1, annexb(P_SLICE, AUD), id="1-byte lengths"),
        pytest.param(avcc(b"", P_SLICE), 4, annexb(P_SLICE), id="zero-length nal dropped"),
        pytest.param(b"", 4, b"", id="empty"),
    ],
)
def test_avcc_to_annexb(data: bytes, size: int, expected: bytes) -> None:
    assert avcc_to_annexb(data, size) == expected


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        pytest.param(avcc(P_SLICE)[:-1], 4, "runs past the end", id="nal truncated"),
        pytest.param(avcc(P_SLICE) + b"\x00\x00", 4, "prefix truncated", id="length truncated"),
        pytest.param(avcc(P_SLICE), 3, "1, 2 or 4", id="bad length size"),
    ],
)
def test_avcc_to_annexb_rejects(data: bytes, size: int, message: str) -> None:
    with pytest.raises(H264Error, match=message):
        avcc_to_annexb(data, size)


@pytest.mark.parametrize(
    ("nal", "expected"),
    [
        (b"\x65\x00\x00\x03\x01", b"\x65\x00\x00\x01"),
        (b"\x00\x00\x03\x00\x00\x03", b"\x00\x00\x00\x00"),
        (b"\x67\x00\x00\x03\x03\x00\x00\x03", b"\x67\x00\x00\x03\x00\x00"),
        (b"\x67\x00\x03\x00", b"\x67\x00\x03\x00"),
        (b"", b""),
    ],
)
def test_remove_emulation_prevention(nal: bytes, expected: bytes) -> None:
    assert remove_emulation_prevention(nal) == expected


@pytest.mark.parametrize(
    ("access_unit", "expected"),
    [
        (annexb(SPS_CB_322X242, PPS, IDR_FIRST), True),
        (annexb(IDR_LATER, short=True), True),
        (annexb(AUD, P_SLICE), False),
        (annexb(SPS_CB_322X242, PPS), False),
        (IDR_FIRST, False),  # not Annex-B: nothing found
    ],
)
def test_is_keyframe(access_unit: bytes, expected: bool) -> None:
    assert is_keyframe(access_unit) is expected


# --- extradata -----------------------------------------------------------------------------------


def avcc_record(sps: Sequence[bytes], pps: Sequence[bytes], length_size: int = 4) -> bytes:
    """Build an AVCDecoderConfigurationRecord the way MP4 muxers write it."""
    head = bytes([1, sps[0][1], sps[0][2], sps[0][3], 0xFC | (length_size - 1), 0xE0 | len(sps)])
    body = b"".join(len(n).to_bytes(2, "big") + n for n in sps)
    tail = bytes([len(pps)]) + b"".join(len(n).to_bytes(2, "big") + n for n in pps)
    return head + body + tail


@pytest.mark.parametrize(
    ("extradata", "expected"),
    [
        pytest.param(
            avcc_record([SPS_MAIN_322X242], [PPS]),
            ParameterSets((SPS_MAIN_322X242,), (PPS,), 4),
            id="avcC",
        ),
        pytest.param(
            avcc_record([SPS_MAIN_322X242], [PPS, PPS_ID1], length_size=2),
            ParameterSets((SPS_MAIN_322X242,), (PPS, PPS_ID1), 2),
            id="avcC two PPS, 2-byte lengths",
        ),
        pytest.param(
            annexb(SPS_HIGH_1080P, PPS, SEI),
            ParameterSets((SPS_HIGH_1080P,), (PPS,), None),
            id="Annex-B",
        ),
        pytest.param(
            annexb(SPS_CB_322X242, PPS, short=True),
            ParameterSets((SPS_CB_322X242,), (PPS,), None),
            id="Annex-B 3-byte",
        ),
        pytest.param(b"", ParameterSets(), id="empty"),
        pytest.param(None, ParameterSets(), id="none"),
    ],
)
def test_parse_extradata(extradata: bytes | None, expected: ParameterSets) -> None:
    parsed = parse_extradata(extradata)
    assert parsed == expected
    assert parsed.is_avcc is (expected.nal_length_size is not None)


@pytest.mark.parametrize(
    ("extradata", "message"),
    [
        pytest.param(b"\x02\x42\x00", "neither avcC nor Annex-B", id="unknown form"),
        pytest.param(b"\x01\x42\x00\x1f", "too short", id="short header"),
        pytest.param(avcc_record([SPS_CB_322X242], [PPS])[:-2], "in a parameter set", id="cut"),
        pytest.param(avcc_record([SPS_CB_322X242], [PPS])[:-8], "PPS count", id="no PPS count"),
        pytest.param(avcc_record([SPS_CB_322X242], [])[:7], "set length", id="cut in length"),
    ],
)
def test_parse_extradata_rejects(extradata: bytes, message: str) -> None:
    with pytest.raises(H264Error, match=message):
        parse_extradata(extradata)


# --- SPS: real literals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nal", "profile", "level", "profile_level_id", "size", "frame_mbs_only", "chroma"),
    [
        (SPS_CB_322X242, H264Profile.CONSTRAINED_BASELINE, "3.1", "42c01f", (322, 242), True, 1),
        (SPS_MAIN_322X242, H264Profile.MAIN, "3.0", "4d401e", (322, 242), True, 1),
        (SPS_HIGH_1080P, H264Profile.HIGH, "4.0", "640028", (1920, 1080), True, 1),
        (SPS_HIGH_576I, H264Profile.HIGH, "3.1", "64001f", (720, 576), False, 1),
        (
            SPS_HIGH444_322X242,
            H264Profile.HIGH_444_PREDICTIVE,
            "1.3",
            "f4000d",
            (322, 242),
            True,
            3,
        ),
        (SPS_HIGH422_322X242, H264Profile.HIGH_422, "1.3", "7a000d", (322, 242), True, 2),
    ],
)
def test_parse_sps_real(
    nal: bytes,
    profile: H264Profile,
    level: str,
    profile_level_id: str,
    size: tuple[int, int],
    frame_mbs_only: bool,
    chroma: int,
) -> None:
    sps = parse_sps(nal)
    assert (sps.profile, sps.level, sps.profile_level_id) == (profile, level, profile_level_id)
    assert (sps.width, sps.height) == size
    assert sps.frame_mbs_only is frame_mbs_only
    assert sps.chroma_format_idc == chroma
    assert (sps.sps_id, sps.bit_depth_luma, sps.bit_depth_chroma) == (0, 8, 8)


# --- SPS: synthetic, built field by field --------------------------------------------------------


class BitWriter:
    """Writes bits and Exp-Golomb codes, the inverse of the parser's reader."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, count: int, value: int) -> None:
        self.bits += [(value >> shift) & 1 for shift in range(count - 1, -1, -1)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        self.u(code.bit_length(), code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        """Close with rbsp_trailing_bits and return the bytes."""
        bits = [*self.bits, 1]
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def escape(rbsp: bytes) -> bytes:
    """Insert emulation prevention bytes (the inverse of remove_emulation_prevention)."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


@dataclass(frozen=True)
class SpsFields:
    """Syntax elements of a hand-built SPS (section 7.3.2.1.1); defaults: 640x480 baseline."""

    profile_idc: int = 66
    constraint_flags: int = 0xC0
    level_idc: int = 30
    sps_id: int = 0
    chroma_format_idc: int = 1
    separate_colour_plane: bool = False
    bit_depth_luma_minus8: int = 0
    scaling_lists: bool = False
    poc_type: int = 0
    width_mbs: int = 40
    height_map_units: int = 30
    frame_mbs_only: bool = True
    crop: tuple[int, int, int, int] | None = None

    def nal(self) -> bytes:
        """Return the SPS NAL unit, header included and emulation prevention applied."""
        w = BitWriter()
        w.u(8, self.profile_idc)
        w.u(8, self.constraint_flags)
        w.u(8, self.level_idc)
        w.ue(self.sps_id)
        if self.profile_idc in (100, 110, 122, 244):
            w.ue(self.chroma_format_idc)
            if self.chroma_format_idc == 3:
                w.u(1, self.separate_colour_plane)
            w.ue(self.bit_depth_luma_minus8)
            w.ue(self.bit_depth_luma_minus8)
            w.u(1, 0)  # qpprime_y_zero_transform_bypass_flag
            w.u(1, self.scaling_lists)
            if self.scaling_lists:
                self._write_scaling_lists(w)
        w.ue(0)  # log2_max_frame_num_minus4
        w.ue(self.poc_type)
        if self.poc_type == 0:
            w.ue(2)
        elif self.poc_type == 1:
            w.u(1, 0)
            w.se(-1)
            w.se(2)
            w.ue(3)
            for offset in (5, -6, 7):
                w.se(offset)
        w.ue(1)  # max_num_ref_frames
        w.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
        w.ue(self.width_mbs - 1)
        w.ue(self.height_map_units - 1)
        w.u(1, self.frame_mbs_only)
        if not self.frame_mbs_only:
            w.u(1, 1)  # mb_adaptive_frame_field_flag
        w.u(1, 1)  # direct_8x8_inference_flag
        w.u(1, self.crop is not None)
        for offset in self.crop or ():
            w.ue(offset)
        w.u(1, 0)  # vui_parameters_present_flag
        return b"\x67" + escape(w.rbsp())

    def _write_scaling_lists(self, w: BitWriter) -> None:
        """List 0 with 16 deltas, list 1 ending early (next scale 0), list 6 with 64 deltas."""
        for index in range(12 if self.chroma_format_idc == 3 else 8):
            present = index in (0, 1, 6)
            w.u(1, present)
            if index == 1:
                w.se(-8)  # next_scale becomes 0: the rest of the list repeats, no more deltas
            elif present:
                for j in range(16 if index < 6 else 64):
                    w.se((j % 5) - 2)


BASE = SpsFields()
# Crop offsets 2**15-1 and 2**15+1 put 30 zero bits in a row: the writer must escape them.
ESCAPED = replace(BASE, width_mbs=8232, crop=(32767, 32769, 0, 0))


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        pytest.param(BASE, (640, 480), id="baseline 640x480"),
        pytest.param(
            replace(BASE, width_mbs=120, height_map_units=68, crop=(0, 0, 0, 4)),
            (1920, 1080),
            id="4:2:0 crop bottom",
        ),
        pytest.param(replace(BASE, crop=(1, 2, 3, 4)), (634, 466), id="4:2:0 crop all sides"),
        pytest.param(
            replace(BASE, frame_mbs_only=False, height_map_units=18, crop=(0, 0, 0, 2)),
            (640, 568),
            id="interlaced: map units are field pairs, crop unit 4",
        ),
        pytest.param(
            replace(
                BASE, profile_idc=100, constraint_flags=0, chroma_format_idc=0, crop=(1, 1, 1, 1)
            ),
            (638, 478),
            id="monochrome crop unit 1",
        ),
        pytest.param(
            replace(
                BASE, profile_idc=122, constraint_flags=0, chroma_format_idc=2, crop=(1, 1, 1, 1)
            ),
            (636, 478),
            id="4:2:2 crop units 2x1",
        ),
        pytest.param(
            replace(
                BASE, profile_idc=244, constraint_flags=0, chroma_format_idc=3, crop=(1, 1, 1, 1)
            ),
            (638, 478),
            id="4:4:4 crop unit 1",
        ),
        pytest.param(
            replace(
                BASE,
                profile_idc=244,
                constraint_flags=0,
                chroma_format_idc=3,
                separate_colour_plane=True,
                crop=(1, 1, 1, 1),
            ),
            (638, 478),
            id="separate colour planes",
        ),
        pytest.param(
            replace(BASE, profile_idc=100, constraint_flags=0, scaling_lists=True),
            (640, 480),
            id="scaling lists skipped",
        ),
        pytest.param(
            replace(
                BASE, profile_idc=244, constraint_flags=0, chroma_format_idc=3, scaling_lists=True
            ),
            (640, 480),
            id="twelve scaling lists",
        ),
        pytest.param(replace(BASE, poc_type=1), (640, 480), id="poc type 1"),
        pytest.param(replace(BASE, poc_type=2), (640, 480), id="poc type 2"),
        pytest.param(replace(BASE, sps_id=31), (640, 480), id="sps id 31"),
        pytest.param(ESCAPED, (640, 480), id="emulation prevention inside parsed fields"),
    ],
)
def test_parse_sps_synthetic(fields: SpsFields, size: tuple[int, int]) -> None:
    sps = parse_sps(fields.nal())
    assert (sps.width, sps.height) == size
    assert sps.profile_idc == fields.profile_idc
    assert sps.sps_id == fields.sps_id
    assert sps.frame_mbs_only is fields.frame_mbs_only
    assert sps.chroma_format_idc == fields.chroma_format_idc
    assert sps.bit_depth_luma == 8 + fields.bit_depth_luma_minus8


def test_synthetic_sps_really_contains_emulation_prevention() -> None:
    assert b"\x00\x00\x03" in ESCAPED.nal()


def test_synthetic_sps_matches_field_types() -> None:
    assert parse_sps(replace(BASE, profile_idc=110, constraint_flags=0x10).nal()) == (
        SequenceParameterSet(
            profile_idc=110,
            constraint_flags=0x10,
            level_idc=30,
            sps_id=0,
            chroma_format_idc=1,
            bit_depth_luma=8,
            bit_depth_chroma=8,
            frame_mbs_only=True,
            width=640,
            height=480,
        )
    )


@pytest.mark.parametrize(
    ("nal", "message"),
    [
        pytest.param(PPS, "not an SPS", id="pps"),
        pytest.param(b"", "not an SPS", id="empty"),
        pytest.param(SPS_CB_322X242[:6], "truncated", id="truncated"),
        pytest.param(b"\x67\x42\xc0\x1f", "truncated", id="header only"),
        pytest.param(replace(BASE, sps_id=32).nal(), "seq_parameter_set_id", id="sps id 32"),
        pytest.param(replace(BASE, poc_type=3).nal(), "pic_order_cnt_type", id="poc type 3"),
        pytest.param(
            replace(BASE, profile_idc=100, chroma_format_idc=4).nal(),
            "chroma_format_idc",
            id="chroma format 4",
        ),
        pytest.param(replace(BASE, crop=(200, 200, 0, 0)).nal(), "no picture", id="crop too big"),
        pytest.param(b"\x67\x42\xc0\x1f\x00\x00\x00\x00\x01", "Exp-Golomb", id="32 zero bits"),
    ],
)
def test_parse_sps_rejects(nal: bytes, message: str) -> None:
    with pytest.raises(H264Error, match=message):
        parse_sps(nal)


# --- profile names and levels --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile_level_id", "expected"),
    [
        ("42e01f", H264Profile.CONSTRAINED_BASELINE),  # the WebRTC default
        ("42c01f", H264Profile.CONSTRAINED_BASELINE),  # what x264 writes
        ("42001f", H264Profile.BASELINE),
        ("42801f", H264Profile.BASELINE),
        ("4d801f", H264Profile.CONSTRAINED_BASELINE),
        ("4d001f", H264Profile.MAIN),
        ("4d401f", H264Profile.MAIN),
        ("58c01f", H264Profile.CONSTRAINED_BASELINE),
        ("58801f", H264Profile.BASELINE),
        ("58001f", H264Profile.EXTENDED),
        ("640c1f", H264Profile.CONSTRAINED_HIGH),
        ("64081f", H264Profile.PROGRESSIVE_HIGH),
        ("64001f", H264Profile.HIGH),
        ("6e001f", H264Profile.HIGH_10),
        ("6e101f", H264Profile.HIGH_10_INTRA),
        ("7a001f", H264Profile.HIGH_422),
        ("7a101f", H264Profile.HIGH_422_INTRA),
        ("f4001f", H264Profile.HIGH_444_PREDICTIVE),
        ("f4101f", H264Profile.HIGH_444_INTRA),
        ("2c101f", H264Profile.CAVLC_444_INTRA),
        ("53001f", H264Profile.SCALABLE_BASELINE),
        ("56001f", H264Profile.SCALABLE_HIGH),
        ("76001f", H264Profile.MULTIVIEW_HIGH),
        ("80001f", H264Profile.STEREO_HIGH),
        ("07001f", H264Profile.UNKNOWN),
    ],
)
def test_classify_profile(profile_level_id: str, expected: H264Profile) -> None:
    raw = bytes.fromhex(profile_level_id)
    assert classify_profile(raw[0], raw[1]) is expected


@pytest.mark.parametrize(
    ("profile_idc", "constraint_flags", "level_idc", "expected"),
    [
        (66, 0xE0, 31, "3.1"),
        (100, 0x00, 40, "4.0"),
        (66, 0x10, 11, "1b"),  # constraint_set3 turns 1.1 into 1b for Baseline/Main/Extended
        (77, 0x10, 11, "1b"),
        (100, 0x10, 11, "1.1"),  # but not for High, which writes 1b as level_idc 9
        (100, 0x00, 9, "1b"),
        (66, 0x00, 11, "1.1"),
        (77, 0x00, 51, "5.1"),
    ],
)
def test_level_name(profile_idc: int, constraint_flags: int, level_idc: int, expected: str) -> None:
    assert level_name(profile_idc, constraint_flags, level_idc) == expected


def test_constraint_flags_and_level_show_in_profile_level_id() -> None:
    sps = parse_sps(replace(BASE, constraint_flags=0xE0, level_idc=0x1F).nal())
    assert sps.profile_level_id == "42e01f"
    assert sps.profile is H264Profile.CONSTRAINED_BASELINE


# --- ParameterSetCache with literal access units -------------------------------------------------

SPS_OTHER = replace(BASE, width_mbs=80, height_map_units=45).nal()  # also id 0: 1280x720


@dataclass(frozen=True)
class FixCase:
    """One row of the fix table: cache contents, input NAL units, expected output and flags."""

    cached: tuple[bytes, ...]
    nals: tuple[bytes, ...]
    expected: tuple[bytes, ...] | None  # None: returned unchanged (the very same object)
    flags: str = ""  # the FixedAccessUnit flags expected True: keyframe starts join changed
    short: bool = False  # 3-byte start codes


PRIMED = (SPS, PPS)
ALL_SET = "keyframe starts join"

FIX_CASES = {
    "idr alone gets sps pps": FixCase(PRIMED, (IDR_FIRST,), (SPS, PPS, IDR_FIRST), ALL_SET),
    "inserted before sei": FixCase(PRIMED, (SEI, IDR_FIRST), (SPS, PPS, SEI, IDR_FIRST), ALL_SET),
    "aud stays first": FixCase(
        PRIMED, (AUD, SEI, IDR_FIRST), (AUD, SPS, PPS, SEI, IDR_FIRST), ALL_SET
    ),
    "3-byte start codes": FixCase(
        PRIMED, (AUD, IDR_FIRST), (AUD, SPS, PPS, IDR_FIRST), ALL_SET, short=True
    ),
    "all slices in one packet": FixCase(
        PRIMED, (IDR_FIRST, IDR_LATER), (SPS, PPS, IDR_FIRST, IDR_LATER), ALL_SET
    ),
    "idr with both in band untouched": FixCase(PRIMED, (SPS, PPS, IDR_FIRST), None, ALL_SET),
    "idr with only sps gets pps": FixCase(
        PRIMED, (SEI, SPS, IDR_FIRST), (SPS, PPS, SEI, IDR_FIRST), ALL_SET
    ),
    "idr with only pps gets sps": FixCase(
        PRIMED, (AUD, PPS, IDR_FIRST), (AUD, SPS, PPS, IDR_FIRST), ALL_SET
    ),
    "in-band sps replaces cached one": FixCase(
        PRIMED, (SPS_OTHER, IDR_FIRST), (SPS_OTHER, PPS, IDR_FIRST), f"{ALL_SET} changed"
    ),
    "every id is sent, in id order": FixCase(
        (SPS, PPS_ID1, SPS_ID1, PPS), (IDR_FIRST,), (SPS, SPS_ID1, PPS, PPS_ID1, IDR_FIRST), ALL_SET
    ),
    "later slice of a keyframe untouched": FixCase(PRIMED, (IDR_LATER,), None, "keyframe"),
    "p slice untouched": FixCase(PRIMED, (AUD, P_SLICE), None),
    "empty cache cannot help": FixCase((), (IDR_FIRST,), None, "keyframe starts"),
    "only pps cached cannot help": FixCase((PPS,), (IDR_FIRST,), None, "keyframe starts"),
    "parameter sets alone are learnt": FixCase((), (SPS, PPS), None, "changed"),
    "in-band sets fill an empty cache": FixCase(
        (), (SPS, PPS, IDR_FIRST), None, f"{ALL_SET} changed"
    ),
    "no start code": FixCase(PRIMED, (), None),
}


@pytest.mark.parametrize("case", FIX_CASES.values(), ids=FIX_CASES.keys())
def test_fix(case: FixCase) -> None:
    cache = ParameterSetCache()
    for nal in case.cached:
        cache.remember(nal)
    # A row without NAL units stands for a bare slice that lacks any start code.
    access_unit = annexb(*case.nals, short=case.short) if case.nals else IDR_FIRST
    fixed = cache.fix(access_unit)
    if case.expected is None:
        assert fixed.data is access_unit
    else:
        assert split_annexb(fixed.data) == list(case.expected)
    flags = case.flags.split()
    assert set(flags) <= {"keyframe", "starts", "join", "changed"}
    assert fixed == FixedAccessUnit(
        data=fixed.data,
        is_keyframe="keyframe" in flags,
        starts_keyframe="starts" in flags,
        join_point="join" in flags,
        inserted_parameter_sets=case.expected is not None,
        parameter_sets_changed="changed" in flags,
    )


def test_fix_writes_clean_annexb() -> None:
    cache = ParameterSetCache.from_extradata(annexb(SPS_CB_322X242, PPS))
    assert cache.fix(annexb(SEI, IDR_FIRST)).data == annexb(SPS_CB_322X242, PPS, SEI, IDR_FIRST)
    # The sets go right after a leading delimiter; the bytes after it are kept as they were.
    with_aud = START_CODE + AUD + b"\x00\x00\x00\x01" + IDR_FIRST
    assert cache.fix(with_aud).data == annexb(AUD, SPS_CB_322X242, PPS, IDR_FIRST)
    # Bytes before the first start code must not end up glued to the PPS.
    junk_first = b"\xde\xad" + annexb(IDR_FIRST)
    assert cache.fix(junk_first).data == annexb(SPS, PPS, IDR_FIRST)
    assert cache.fix(b"\xde\xad" + annexb(SPS, IDR_FIRST)).data == annexb(SPS, PPS, IDR_FIRST)


def test_fix_uses_sps_learnt_in_band_for_later_idr() -> None:
    cache = ParameterSetCache.from_extradata(avcc_record([SPS_CB_322X242], [PPS]))
    assert cache.fix(annexb(SPS_OTHER, PPS, IDR_FIRST)).parameter_sets_changed
    assert split_annexb(cache.fix(annexb(IDR_FIRST)).data) == [SPS_OTHER, PPS, IDR_FIRST]
    assert not cache.fix(annexb(SPS_OTHER, PPS, IDR_FIRST)).parameter_sets_changed


@pytest.mark.parametrize(
    ("nal", "expected"),
    [
        pytest.param(SPS_CB_322X242, True, id="new sps"),
        pytest.param(PPS, True, id="new pps"),
        pytest.param(IDR_FIRST, False, id="slice ignored"),
        pytest.param(b"\x67\x42\xc0", False, id="sps without id ignored"),
        pytest.param(b"\x68", False, id="pps without id ignored"),
        pytest.param(b"", False, id="empty ignored"),
    ],
)
def test_remember(nal: bytes, expected: bool) -> None:
    cache = ParameterSetCache()
    assert cache.remember(nal) is expected
    assert cache.remember(nal) is False  # the same bytes again change nothing


def test_cache_orders_sets_by_id_and_reports_ready() -> None:
    cache = ParameterSetCache()
    assert not cache.ready
    for nal in (SPS_ID1, SPS_CB_322X242):
        cache.remember(nal)
    assert not cache.ready
    cache.remember(PPS_ID1)
    assert cache.ready
    cache.remember(PPS)
    assert cache.sps == (SPS_CB_322X242, SPS_ID1)
    assert cache.pps == (PPS, PPS_ID1)


@pytest.mark.parametrize(
    ("extradata", "changed"),
    [
        pytest.param(avcc_record([SPS_CB_322X242], [PPS]), True, id="avcC"),
        pytest.param(annexb(SPS_CB_322X242, PPS), True, id="Annex-B"),
        pytest.param(None, False, id="none"),
    ],
)
def test_update_from_extradata(extradata: bytes | None, changed: bool) -> None:
    cache = ParameterSetCache()
    assert cache.update_from_extradata(extradata) is changed
    assert cache.update_from_extradata(extradata) is False
    assert cache.ready is changed


def test_from_extradata_rejects_garbage() -> None:
    with pytest.raises(H264Error):
        ParameterSetCache.from_extradata(b"\x02garbage")


# --- real streams from libx264 -------------------------------------------------------------------

FRAME_RATE = 30


def encode(
    options: dict[str, str],
    *,
    global_header: bool,
    size: tuple[int, int] = (322, 242),
    frames: int = 6,
) -> tuple[bytes | None, list[bytes]]:
    """Encode a moving gradient with libx264; return (extradata, packets as bytes)."""
    width, height = size
    codec = av.CodecContext.create("libx264", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, FRAME_RATE)
    codec.framerate = Fraction(FRAME_RATE)
    codec.options = options
    if global_header:
        codec.flags |= av.codec.context.Flags.global_header
    codec.open()
    packets = [bytes(p) for f in gradient_frames(width, height, frames) for p in codec.encode(f)]
    packets += [bytes(p) for p in codec.encode(None)]
    return codec.extradata, packets


def gradient_frames(width: int, height: int, count: int) -> Iterable[av.VideoFrame]:
    """Yield ``count`` yuv420p frames of a gradient that moves a little each frame."""
    ys, xs = np.mgrid[0:height, 0:width]
    for index in range(count):
        luma = ((xs + ys + 7 * index) % 256).astype(np.uint8)
        rgb = np.stack([luma, np.flipud(luma), np.fliplr(luma)], axis=-1)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        yield frame


# threads=1: PyAV opens encoders with slice threading, which makes x264 cut every picture into
# one slice per core; the slice count would depend on the machine.
ENCODINGS = {
    "baseline": (
        {"profile": "baseline", "level": "3.1"},
        H264Profile.CONSTRAINED_BASELINE,
        "42c01f",
    ),
    "main": ({"profile": "main", "level": "3.0"}, H264Profile.MAIN, "4d401e"),
    # The field notes' trap: ultrafast turns CABAC off, and x264 then writes Constrained Baseline.
    "main ultrafast": (
        {"profile": "main", "level": "3.0", "preset": "ultrafast"},
        H264Profile.CONSTRAINED_BASELINE,
        "42c01e",
    ),
    "high": ({"profile": "high", "level": "4.0"}, H264Profile.HIGH, "640028"),
}


@pytest.mark.parametrize("global_header", [False, True], ids=["in-band", "global-header"])
@pytest.mark.parametrize("name", ENCODINGS)
def test_real_stream_parameters(name: str, global_header: bool) -> None:
    options, profile, profile_level_id = ENCODINGS[name]
    extradata, packets = encode(
        options | {"x264-params": "keyint=3:threads=1"}, global_header=global_header, frames=7
    )
    sets = parse_extradata(extradata)
    if global_header:
        # libx264's extradata is Annex-B, not avcC; only an MP4/MKV muxer turns it into avcC.
        assert extradata is not None and is_annexb(extradata)
        assert not sets.is_avcc and len(sets.sps) == len(sets.pps) == 1
        sps_nal = sets.sps[0]
    else:
        assert sets == ParameterSets()
        sps_nal = split_annexb(packets[0])[0]
    sps = parse_sps(sps_nal)
    assert (sps.profile, sps.profile_level_id) == (profile, profile_level_id)
    assert (sps.width, sps.height) == (322, 242)
    assert sps.level == options["level"]

    cache = ParameterSetCache.from_extradata(extradata)
    fixed = [cache.fix(packet) for packet in packets]
    keyframes = [f for f in fixed if f.is_keyframe]
    assert len(keyframes) == 3  # frames 0, 3 and 6
    for unit in keyframes:
        assert unit.join_point and unit.starts_keyframe
        assert [nal_type(n) for n in split_annexb(unit.data)[:2]] == [NalType.SPS, NalType.PPS]
        # Without a global header x264 repeats SPS/PPS before every IDR itself.
        assert unit.inserted_parameter_sets is global_header
    assert not any(f.inserted_parameter_sets for f in fixed if not f.is_keyframe)


def decode(packets: Iterable[bytes]) -> tuple[int, int]:
    """Feed packets to a fresh h264 decoder without extradata; return (frames, errors)."""
    decoder = av.CodecContext.create("h264", "r")
    frames = errors = 0
    for data in packets:
        try:
            frames += len(decoder.decode(av.Packet(data)))
        except av.error.InvalidDataError:
            errors += 1
    frames += len(decoder.decode(None))
    return frames, errors


@pytest.mark.parametrize("name", ["baseline", "main", "high"])
def test_round_trip_extradata_only_stream_decodes(name: str) -> None:
    options = ENCODINGS[name][0] | {"x264-params": "keyint=4:threads=1"}
    extradata, packets = encode(options, global_header=True, frames=10)
    assert not any(NalType.SPS in map(nal_type, split_annexb(p)) for p in packets)

    assert decode(packets)[0] == 0  # the control: no SPS/PPS, nothing decodes

    cache = ParameterSetCache.from_extradata(extradata)
    assert decode(cache.fix(p).data for p in packets) == (10, 0)


def mux(container_format: str, options: dict[str, str], frames: int) -> io.BytesIO:
    """Encode with libx264 into an in-memory container and rewind it."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as output:
        stream = output.add_stream("libx264", rate=FRAME_RATE, options=options)
        stream.width, stream.height, stream.pix_fmt = 322, 242, "yuv420p"
        for frame in gradient_frames(322, 242, frames):
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    buffer.seek(0)
    return buffer


def test_round_trip_mp4_avcc_stream_decodes_like_ffmpeg_bsf() -> None:
    buffer = mux("mp4", {"profile": "main", "x264-params": "keyint=4:threads=1"}, frames=10)
    with av.open(buffer, "r") as container:
        stream = container.streams.video[0]
        extradata = stream.codec_context.extradata
        sets = parse_extradata(extradata)
        assert sets.nal_length_size == 4  # MP4 gives an avcC record and length-prefixed packets
        assert parse_sps(sets.sps[0]).profile is H264Profile.MAIN
        cache = ParameterSetCache.from_extradata(extradata)
        oracle = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
        ours: list[bytes] = []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            ours.append(cache.fix(avcc_to_annexb(bytes(packet), sets.nal_length_size)).data)
            # The filter takes the packet over (its fields read empty afterwards): call it last.
            theirs = b"".join(bytes(p) for p in oracle.filter(packet))
            # FFmpeg puts SPS/PPS after a leading SEI, we put them before; the rest is identical.
            assert without_sei(ours[-1]) == without_sei(theirs)
    assert sum(is_keyframe(p) for p in ours) == 3
    assert decode(ours) == (10, 0)


def without_sei(access_unit: bytes) -> list[bytes]:
    """Return the NAL units of an access unit other than SEI."""
    return [n for n in split_annexb(access_unit) if nal_type(n) != NalType.SEI]


def test_round_trip_multi_slice_keyframes_split_into_packets() -> None:
    """FFmpeg's RTSP path can hand over one slice per packet; only the first gets SPS/PPS."""
    extradata, packets = encode(
        {"profile": "main", "x264-params": "keyint=4:slices=4:threads=1"},
        global_header=True,
        frames=8,
    )
    cache = ParameterSetCache.from_extradata(extradata)
    pictures: list[list[FixedAccessUnit]] = []
    for packet in packets:
        nals = split_annexb(packet)
        slices = [i for i, n in enumerate(nals) if nal_type(n) in (NalType.IDR, NalType.SLICE)]
        assert len(slices) == 4
        # The first packet carries everything up to and including the first slice.
        packet_nals = [nals[: slices[0] + 1], *([nals[i]] for i in slices[1:])]
        pictures.append([cache.fix(join_annexb(part)) for part in packet_nals])

    keyframes = [p for p in pictures if p[0].is_keyframe]
    assert len(keyframes) == 2
    for parts in keyframes:
        assert [p.inserted_parameter_sets for p in parts] == [True, False, False, False]
        assert [p.starts_keyframe for p in parts] == [True, False, False, False]
        assert all(p.is_keyframe for p in parts)
    # A viewer's depacketizer puts a picture's slices back together before decoding.
    assert decode(b"".join(p.data for p in parts) for parts in pictures) == (8, 0)
