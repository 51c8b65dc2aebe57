"""H.264 bitstream core: Annex-B and AVCC framing, parameter sets, SPS fields, keyframe fix-ups.

Pure functions and a small stateful cache; no I/O, no asyncio, no PyAV. Everything here works on
``bytes`` exactly as a demuxer hands them over, so it can be table-tested with literal NAL units.

References: ITU-T H.264 (06/2019) sections 7.3.1 (NAL unit), 7.3.2.1.1 (SPS), 7.4.1.2.3 (order
of NAL units), 9.1 (Exp-Golomb), B.1 (byte stream); ISO/IEC 14496-15 5.3.3.1 (avcC record);
RFC 6184 section 8.1 (``profile-level-id``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final

START_CODE: Final = b"\x00\x00\x00\x01"
"""Four-byte Annex-B start code; used for every NAL unit this module writes."""

_START_CODE_3: Final = b"\x00\x00\x01"
_EMULATION_PREVENTION: Final = b"\x00\x00\x03"
_NAL_TYPE_MASK: Final = 0x1F
_FIRST_MB_IS_ZERO_BIT: Final = 0x80
"""In a slice NAL, ``first_mb_in_slice`` is the first ue(v) after the header; 0 codes as bit 1."""

_AVCC_VERSION: Final = 1
_AVCC_HEADER_BYTES: Final = 6
_AVCC_LENGTH_SIZES: Final = frozenset({1, 2, 4})
_MAX_SPS_ID: Final = 31
_MAX_PPS_ID: Final = 255
_MAX_EXP_GOLOMB_ZEROS: Final = 31
_MAX_POC_CYCLE: Final = 255
_MACROBLOCK_PX: Final = 16

_HIGH_PROFILE_IDCS: Final = frozenset(
    {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}
)
"""profile_idc values whose SPS carries chroma_format_idc, bit depths and scaling lists."""


class H264Error(ValueError):
    """A bitstream, extradata record or SPS is malformed or truncated."""


class NalType(IntEnum):
    """H.264 ``nal_unit_type`` values (Table 7-1) this relay cares about."""

    SLICE = 1
    SLICE_DPA = 2
    SLICE_DPB = 3
    SLICE_DPC = 4
    IDR = 5
    SEI = 6
    SPS = 7
    PPS = 8
    AUD = 9
    END_OF_SEQUENCE = 10
    END_OF_STREAM = 11
    FILLER = 12
    SPS_EXTENSION = 13
    PREFIX = 14
    SUBSET_SPS = 15


def nal_type(nal: bytes) -> int:
    """Return the ``nal_unit_type`` of a NAL unit given without start code (0 if empty)."""
    return nal[0] & _NAL_TYPE_MASK if nal else 0


# --- framing -------------------------------------------------------------------------------------


def _nal_spans(data: bytes) -> list[tuple[int, int]]:
    """Return ``(start, end)`` of each non-empty NAL unit in an Annex-B byte stream.

    Bytes before the first start code are ignored; trailing zero bytes of a NAL unit (the extra
    ``00`` of a four-byte start code, ``trailing_zero_8bits``) are not part of it.
    """
    spans: list[tuple[int, int]] = []
    start = -1
    pos = data.find(_START_CODE_3)
    while True:
        end = len(data) if pos == -1 else pos
        if start >= 0:
            while end > start and data[end - 1] == 0:
                end -= 1
            if end > start:
                spans.append((start, end))
        if pos == -1:
            return spans
        start = pos + len(_START_CODE_3)
        pos = data.find(_START_CODE_3, start)


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream (3- or 4-byte start codes) into NAL units without start codes.

    Lenient by design: data without any start code yields an empty list, never an error.
    """
    return [data[start:end] for start, end in _nal_spans(data)]


def join_annexb(nals: Iterable[bytes]) -> bytes:
    """Join NAL units into an Annex-B byte stream with four-byte start codes."""
    return b"".join(START_CODE + nal for nal in nals)


def avcc_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """Convert length-prefixed (AVCC, as in MP4) NAL units to Annex-B.

    ``length_size`` comes from the avcC record (`ParameterSets.nal_length_size`). Raises
    `H264Error` when a length runs past the end of ``data``.
    """
    if length_size not in _AVCC_LENGTH_SIZES:
        raise H264Error(f"AVCC NAL length size must be 1, 2 or 4 bytes, not {length_size}")
    nals: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + length_size > len(data):
            raise H264Error(f"AVCC length prefix truncated at byte {pos} of {len(data)}")
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if pos + size > len(data):
            raise H264Error(f"AVCC NAL unit of {size} bytes runs past the end at byte {pos}")
        if size:
            nals.append(data[pos : pos + size])
        pos += size
    return join_annexb(nals)


def is_annexb(data: bytes) -> bool:
    """Return True if ``data`` starts with an Annex-B start code (3 or 4 bytes)."""
    return data.startswith((_START_CODE_3, START_CODE))


def is_keyframe(access_unit: bytes) -> bool:
    """Return True if an Annex-B access unit (or part of one) contains an IDR slice."""
    return any(access_unit[s] & _NAL_TYPE_MASK == NalType.IDR for s, _ in _nal_spans(access_unit))


def remove_emulation_prevention(nal: bytes) -> bytes:
    """Return the RBSP of a NAL unit: every ``00 00 03`` becomes ``00 00`` (section 7.4.1)."""
    parts: list[bytes] = []
    start = 0
    pos = nal.find(_EMULATION_PREVENTION)
    while pos != -1:
        parts.append(nal[start : pos + 2])
        start = pos + 3
        pos = nal.find(_EMULATION_PREVENTION, start)
    if not parts:
        return nal
    parts.append(nal[start:])
    return b"".join(parts)


# --- extradata -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParameterSets:
    """SPS and PPS NAL units (no start codes) found in a stream's extradata."""

    sps: tuple[bytes, ...] = ()
    pps: tuple[bytes, ...] = ()
    nal_length_size: int | None = None
    """Bytes per NAL length prefix in packets for an avcC record; None for Annex-B extradata."""

    @property
    def is_avcc(self) -> bool:
        """True if the extradata was an avcC record, so packets are length-prefixed."""
        return self.nal_length_size is not None


def parse_extradata(extradata: bytes | None) -> ParameterSets:
    """Parse codec extradata, either an avcC record (MP4, MKV) or Annex-B (RTSP, MPEG-TS).

    Empty or missing extradata gives empty `ParameterSets`. Raises `H264Error` otherwise when the
    data is neither form or is truncated.
    """
    if not extradata:
        return ParameterSets()
    if is_annexb(extradata):
        nals = split_annexb(extradata)
        return ParameterSets(
            sps=tuple(n for n in nals if nal_type(n) == NalType.SPS),
            pps=tuple(n for n in nals if nal_type(n) == NalType.PPS),
        )
    if extradata[0] == _AVCC_VERSION:
        return _parse_avcc(extradata)
    raise H264Error(f"extradata is neither avcC nor Annex-B (first byte 0x{extradata[0]:02x})")


def _parse_avcc(record: bytes) -> ParameterSets:
    """Parse an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1)."""
    if len(record) < _AVCC_HEADER_BYTES:
        raise H264Error(f"avcC record too short: {len(record)} bytes")
    length_size = (record[4] & 0x03) + 1
    if length_size not in _AVCC_LENGTH_SIZES:
        raise H264Error(f"avcC NAL length size of {length_size} bytes is invalid")
    sps, pos = _read_avcc_array(record, _AVCC_HEADER_BYTES, record[5] & 0x1F)
    if pos >= len(record):
        raise H264Error("avcC record truncated before the PPS count")
    pps, _ = _read_avcc_array(record, pos + 1, record[pos])
    return ParameterSets(sps=sps, pps=pps, nal_length_size=length_size)


def _read_avcc_array(record: bytes, pos: int, count: int) -> tuple[tuple[bytes, ...], int]:
    """Read ``count`` 16-bit-length-prefixed NAL units from an avcC record starting at ``pos``."""
    nals: list[bytes] = []
    for _ in range(count):
        if pos + 2 > len(record):
            raise H264Error("avcC record truncated in a parameter set length")
        size = int.from_bytes(record[pos : pos + 2], "big")
        pos += 2
        if pos + size > len(record):
            raise H264Error("avcC record truncated in a parameter set")
        nals.append(record[pos : pos + size])
        pos += size
    return tuple(nals), pos


# --- SPS -----------------------------------------------------------------------------------------


class _BitReader:
    """Big-endian bit reader with Exp-Golomb codes over an RBSP (section 9.1)."""

    def __init__(self, rbsp: bytes) -> None:
        """Wrap ``rbsp`` (emulation prevention already removed)."""
        self._value = int.from_bytes(rbsp, "big")
        self._bits = len(rbsp) * 8
        self._pos = 0

    def u(self, count: int) -> int:
        """Read ``count`` bits as an unsigned integer."""
        shift = self._bits - self._pos - count
        if shift < 0:
            raise H264Error(f"bitstream truncated at bit {self._pos} of {self._bits}")
        self._pos += count
        return (self._value >> shift) & ((1 << count) - 1)

    def flag(self) -> bool:
        """Read one bit as a boolean."""
        return self.u(1) == 1

    def ue(self) -> int:
        """Read an unsigned Exp-Golomb code, ue(v)."""
        remaining = self._bits - self._pos
        rest = self._value & ((1 << remaining) - 1)
        zeros = remaining - rest.bit_length()
        if zeros > _MAX_EXP_GOLOMB_ZEROS or zeros == remaining:
            raise H264Error(f"invalid or truncated Exp-Golomb code at bit {self._pos}")
        self._pos += zeros
        return self.u(zeros + 1) - 1

    def se(self) -> int:
        """Read a signed Exp-Golomb code, se(v)."""
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


class H264Profile(StrEnum):
    """Human H.264 profile names (Annex A), as WebRTC and RFC 6184 distinguish them."""

    CONSTRAINED_BASELINE = "Constrained Baseline"
    BASELINE = "Baseline"
    MAIN = "Main"
    EXTENDED = "Extended"
    HIGH = "High"
    PROGRESSIVE_HIGH = "Progressive High"
    CONSTRAINED_HIGH = "Constrained High"
    HIGH_10 = "High 10"
    HIGH_10_INTRA = "High 10 Intra"
    HIGH_422 = "High 4:2:2"
    HIGH_422_INTRA = "High 4:2:2 Intra"
    HIGH_444_PREDICTIVE = "High 4:4:4 Predictive"
    HIGH_444_INTRA = "High 4:4:4 Intra"
    CAVLC_444_INTRA = "CAVLC 4:4:4 Intra"
    SCALABLE_BASELINE = "Scalable Baseline"
    SCALABLE_HIGH = "Scalable High"
    MULTIVIEW_HIGH = "Multiview High"
    STEREO_HIGH = "Stereo High"
    UNKNOWN = "Unknown"


_PLAIN_PROFILES: Final[dict[int, H264Profile]] = {
    44: H264Profile.CAVLC_444_INTRA,
    83: H264Profile.SCALABLE_BASELINE,
    86: H264Profile.SCALABLE_HIGH,
    118: H264Profile.MULTIVIEW_HIGH,
    128: H264Profile.STEREO_HIGH,
}
_INTRA_VARIANTS: Final[dict[int, tuple[H264Profile, H264Profile]]] = {
    110: (H264Profile.HIGH_10, H264Profile.HIGH_10_INTRA),
    122: (H264Profile.HIGH_422, H264Profile.HIGH_422_INTRA),
    244: (H264Profile.HIGH_444_PREDICTIVE, H264Profile.HIGH_444_INTRA),
}


def _constraint_set(constraint_flags: int, index: int) -> bool:
    """Return ``constraint_set<index>_flag`` from the profile-iop byte (set0 is the MSB)."""
    return bool(constraint_flags & (0x80 >> index))


def classify_profile(profile_idc: int, constraint_flags: int) -> H264Profile:
    """Name the profile from ``profile_idc`` and the constraint flags byte (Annex A.2)."""
    set0, set1, _, set3, set4, set5 = (_constraint_set(constraint_flags, i) for i in range(6))
    if profile_idc == 66:
        return H264Profile.CONSTRAINED_BASELINE if set1 else H264Profile.BASELINE
    if profile_idc == 77:
        return H264Profile.CONSTRAINED_BASELINE if set0 else H264Profile.MAIN
    if profile_idc == 88:
        if set0:
            return H264Profile.CONSTRAINED_BASELINE if set1 else H264Profile.BASELINE
        return H264Profile.EXTENDED
    if profile_idc == 100:
        if set4:
            return H264Profile.CONSTRAINED_HIGH if set5 else H264Profile.PROGRESSIVE_HIGH
        return H264Profile.HIGH
    if profile_idc in _INTRA_VARIANTS:
        return _INTRA_VARIANTS[profile_idc][1 if set3 else 0]
    return _PLAIN_PROFILES.get(profile_idc, H264Profile.UNKNOWN)


def level_name(profile_idc: int, constraint_flags: int, level_idc: int) -> str:
    """Return the level as written in Table A-1 ("3.1", "1b"); level 1b has two encodings."""
    level_1b = level_idc == 9 or (
        level_idc == 11 and profile_idc in (66, 77, 88) and _constraint_set(constraint_flags, 3)
    )
    return "1b" if level_1b else f"{level_idc // 10}.{level_idc % 10}"


@dataclass(frozen=True, slots=True)
class SequenceParameterSet:
    """The fields of an SPS a relay needs: profile, level, picture size (after cropping)."""

    profile_idc: int
    constraint_flags: int
    """The byte after profile_idc: constraint_set0..5 flags (MSB first), then 2 reserved bits."""
    level_idc: int
    sps_id: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    frame_mbs_only: bool
    """False for interlaced (field or MBAFF) coding."""
    width: int
    height: int

    @property
    def profile(self) -> H264Profile:
        """The profile's human name."""
        return classify_profile(self.profile_idc, self.constraint_flags)

    @property
    def level(self) -> str:
        """The level as written in Table A-1, e.g. "3.1"."""
        return level_name(self.profile_idc, self.constraint_flags, self.level_idc)

    @property
    def profile_level_id(self) -> str:
        """RFC 6184 ``profile-level-id``: six lowercase hex digits, e.g. "42e01f"."""
        return f"{self.profile_idc:02x}{self.constraint_flags:02x}{self.level_idc:02x}"


def parse_sps(nal: bytes) -> SequenceParameterSet:
    """Parse an SPS NAL unit (header byte included, no start code) up to its cropping window.

    Raises `H264Error` for a NAL unit that is not an SPS, is truncated or holds impossible values.
    """
    if nal_type(nal) != NalType.SPS:
        raise H264Error(f"not an SPS NAL unit (type {nal_type(nal)})")
    reader = _BitReader(remove_emulation_prevention(nal[1:]))
    profile_idc, constraint_flags, level_idc = reader.u(8), reader.u(8), reader.u(8)
    sps_id = _checked("seq_parameter_set_id", reader.ue(), _MAX_SPS_ID)
    chroma_format_idc, separate_planes, depth_luma, depth_chroma = 1, False, 8, 8
    if profile_idc in _HIGH_PROFILE_IDCS:
        chroma_format_idc = _checked("chroma_format_idc", reader.ue(), 3)
        separate_planes = chroma_format_idc == 3 and reader.flag()
        depth_luma = 8 + _checked("bit_depth_luma_minus8", reader.ue(), 6)
        depth_chroma = 8 + _checked("bit_depth_chroma_minus8", reader.ue(), 6)
        reader.flag()  # qpprime_y_zero_transform_bypass_flag
        if reader.flag():  # seq_scaling_matrix_present_flag
            _skip_scaling_lists(reader, 12 if chroma_format_idc == 3 else 8)
    reader.ue()  # log2_max_frame_num_minus4
    _skip_pic_order_cnt(reader)
    reader.ue()  # max_num_ref_frames
    reader.flag()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = reader.ue() + 1
    height_map_units = reader.ue() + 1
    frame_mbs_only = reader.flag()
    if not frame_mbs_only:
        reader.flag()  # mb_adaptive_frame_field_flag
    reader.flag()  # direct_8x8_inference_flag
    crop = (reader.ue(), reader.ue(), reader.ue(), reader.ue()) if reader.flag() else (0, 0, 0, 0)
    crop_x, crop_y = _crop_units(0 if separate_planes else chroma_format_idc, frame_mbs_only)
    width = width_mbs * _MACROBLOCK_PX - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_map_units * _MACROBLOCK_PX - crop_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise H264Error(f"cropping window leaves no picture ({width}x{height})")
    return SequenceParameterSet(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        sps_id=sps_id,
        chroma_format_idc=chroma_format_idc,
        bit_depth_luma=depth_luma,
        bit_depth_chroma=depth_chroma,
        frame_mbs_only=frame_mbs_only,
        width=width,
        height=height,
    )


def _checked(name: str, value: int, maximum: int) -> int:
    """Return ``value`` or raise `H264Error` naming the field when it exceeds ``maximum``."""
    if value > maximum:
        raise H264Error(f"{name} is {value}, at most {maximum} is allowed")
    return value


def _skip_scaling_lists(reader: _BitReader, count: int) -> None:
    """Skip ``count`` optional scaling lists (section 7.3.2.1.1.1): 6 of 16 entries, then 64."""
    for index in range(count):
        if not reader.flag():  # seq_scaling_list_present_flag
            continue
        last_scale = next_scale = 8
        for _ in range(16 if index < 6 else 64):
            if next_scale:
                next_scale = (last_scale + reader.se()) % 256
            last_scale = next_scale or last_scale


def _skip_pic_order_cnt(reader: _BitReader) -> None:
    """Skip the picture order count fields, which depend on pic_order_cnt_type."""
    poc_type = _checked("pic_order_cnt_type", reader.ue(), 2)
    if poc_type == 0:
        reader.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        reader.flag()  # delta_pic_order_always_zero_flag
        reader.se()  # offset_for_non_ref_pic
        reader.se()  # offset_for_top_to_bottom_field
        cycle = _checked("num_ref_frames_in_pic_order_cnt_cycle", reader.ue(), _MAX_POC_CYCLE)
        for _ in range(cycle):
            reader.se()  # offset_for_ref_frame


def _crop_units(chroma_array_type: int, frame_mbs_only: bool) -> tuple[int, int]:
    """Return (CropUnitX, CropUnitY) in luma samples (equations 7-19 to 7-22)."""
    field_factor = 2 - frame_mbs_only
    if chroma_array_type == 0:
        return 1, field_factor
    sub_width, sub_height = {1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma_array_type]
    return sub_width, sub_height * field_factor


# --- keyframe fix-up -----------------------------------------------------------------------------


def _parameter_set_id(nal: bytes) -> int | None:
    """Return the id of an SPS or PPS NAL unit, or None if it cannot be read."""
    kind = nal_type(nal)
    try:
        reader = _BitReader(remove_emulation_prevention(nal[1:]))
        if kind == NalType.SPS:
            reader.u(24)  # profile_idc, constraint flags, level_idc
            return _checked("seq_parameter_set_id", reader.ue(), _MAX_SPS_ID)
        return _checked("pic_parameter_set_id", reader.ue(), _MAX_PPS_ID)
    except H264Error:
        return None


def _start_code_position(data: bytes, nal_start: int) -> int:
    """Return where the start code before the NAL unit at ``nal_start`` begins (3 or 4 bytes)."""
    position = nal_start - len(_START_CODE_3)
    return position - 1 if position > 0 and data[position - 1] == 0 else position


@dataclass(frozen=True, slots=True)
class FixedAccessUnit:
    """An Annex-B access unit (or slice packet) after `ParameterSetCache.fix`."""

    data: bytes
    is_keyframe: bool
    """Contains an IDR slice (possibly a later slice of a multi-slice keyframe)."""
    starts_keyframe: bool
    """Contains the first slice (first_mb_in_slice 0) of an IDR picture."""
    join_point: bool
    """Starts an IDR picture with SPS and PPS in front: a fresh decoder can begin here."""
    inserted_parameter_sets: bool
    """SPS and PPS from the cache were put in front of the IDR picture."""
    parameter_sets_changed: bool
    """An in-band SPS or PPS was new or differed from the cached one with the same id."""


class ParameterSetCache:
    """Remembers the latest SPS and PPS per id and puts them in front of IDR pictures lacking them.

    Pure state, no I/O; one instance per camera stream, fed from one thread. Bounded by the
    standard: at most 32 SPS and 256 PPS ids.
    """

    def __init__(self) -> None:
        """Start empty; feed extradata with `update_from_extradata` or let in-band sets fill it."""
        self._sps: dict[int, bytes] = {}
        self._pps: dict[int, bytes] = {}
        self._prefix: bytes | None = None

    @classmethod
    def from_extradata(cls, extradata: bytes | None) -> ParameterSetCache:
        """Build a cache primed from codec extradata (avcC or Annex-B); may raise `H264Error`."""
        cache = cls()
        cache.update_from_extradata(extradata)
        return cache

    @property
    def sps(self) -> tuple[bytes, ...]:
        """Cached SPS NAL units, ordered by id."""
        return tuple(nal for _, nal in sorted(self._sps.items()))

    @property
    def pps(self) -> tuple[bytes, ...]:
        """Cached PPS NAL units, ordered by id."""
        return tuple(nal for _, nal in sorted(self._pps.items()))

    @property
    def ready(self) -> bool:
        """True once at least one SPS and one PPS are known."""
        return bool(self._sps) and bool(self._pps)

    def update_from_extradata(self, extradata: bytes | None) -> bool:
        """Remember the SPS and PPS in extradata; return True if any was new or changed."""
        sets = parse_extradata(extradata)
        changed = False
        for nal in (*sets.sps, *sets.pps):
            changed |= self.remember(nal)
        return changed

    def remember(self, nal: bytes) -> bool:
        """Store one SPS or PPS NAL unit; return True if new or changed, False otherwise.

        Other NAL types and parameter sets whose id cannot be read are ignored.
        """
        kind = nal_type(nal)
        table = self._sps if kind == NalType.SPS else self._pps if kind == NalType.PPS else None
        set_id = _parameter_set_id(nal) if table is not None else None
        if table is None or set_id is None or table.get(set_id) == nal:
            return False
        table[set_id] = nal
        self._prefix = None
        return True

    def fix(self, access_unit: bytes) -> FixedAccessUnit:
        """Remember in-band SPS/PPS; put the cached ones in front of an IDR picture lacking them.

        ``access_unit`` is Annex-B. Only the packet holding the first slice of an IDR picture is
        changed (inserted after a leading access unit delimiter); later slices of a multi-slice
        keyframe, non-IDR packets and IDR pictures that carry both SPS and PPS come back as the
        same object. Never raises.
        """
        spans = _nal_spans(access_unit)
        has_sps = has_pps = keyframe = starts = changed = False
        for start, end in spans:
            kind = access_unit[start] & _NAL_TYPE_MASK
            if kind in (NalType.SPS, NalType.PPS):
                has_sps |= kind == NalType.SPS
                has_pps |= kind == NalType.PPS
                changed |= self.remember(access_unit[start:end])
            elif kind == NalType.IDR:
                keyframe = True
                starts |= end - start > 1 and bool(access_unit[start + 1] & _FIRST_MB_IS_ZERO_BIT)
        if not starts or (has_sps and has_pps) or not self.ready:
            return FixedAccessUnit(
                data=access_unit,
                is_keyframe=keyframe,
                starts_keyframe=starts,
                join_point=starts and has_sps and has_pps,
                inserted_parameter_sets=False,
                parameter_sets_changed=changed,
            )
        return FixedAccessUnit(
            data=self._insert_parameter_sets(access_unit, spans, has_sps or has_pps),
            is_keyframe=True,
            starts_keyframe=True,
            join_point=True,
            inserted_parameter_sets=True,
            parameter_sets_changed=changed,
        )

    def _insert_parameter_sets(
        self, access_unit: bytes, spans: list[tuple[int, int]], drop_in_band: bool
    ) -> bytes:
        """Return the access unit with all cached SPS then PPS after any leading delimiter.

        With ``drop_in_band`` (the unit carried only one kind), its own SPS/PPS, already in the
        cache, are dropped so each appears once and in order.
        """
        if self._prefix is None:
            self._prefix = join_annexb((*self.sps, *self.pps))
        lead = 1 if access_unit[spans[0][0]] & _NAL_TYPE_MASK == NalType.AUD else 0
        # Keep the delimiter; drop anything before the first start code, which would otherwise
        # end up glued to the last PPS.
        head = access_unit[: spans[0][1]] if lead else b""
        if not drop_in_band:
            tail_start = spans[0][1] if lead else _start_code_position(access_unit, spans[0][0])
            return b"".join((head, self._prefix, access_unit[tail_start:]))
        rest = (
            access_unit[start:end]
            for start, end in spans[lead:]
            if access_unit[start] & _NAL_TYPE_MASK not in (NalType.SPS, NalType.PPS)
        )
        return b"".join((head, self._prefix, join_annexb(rest)))
