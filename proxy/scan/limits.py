"""Resource limits every scanner honours, so hostile input costs bounded time and memory.

`ScanLimits` is a frozen value passed down from `scan_path` to each format scanner. A limit that is hit is a
finding (the scanner could not prove the content safe), never a silent truncation and never an exception.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MB = 1024 * 1024
GB = 1024 * MB


class ScanLimits(BaseModel):
    """Caps on what one scan may read, unpack or keep in memory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # containers (zip / tar / 7z / gzip / xz / bz2 / zlib)
    max_archive_depth: int = Field(default=4, ge=0)  # nesting of archives inside archives
    max_archive_members: int = Field(default=10_000, ge=1)  # members per archive, all depths together
    max_uncompressed_bytes: int = Field(default=20 * GB, ge=0)  # total bytes inflated per scan
    max_compression_ratio: float = Field(default=200.0, gt=1.0)  # uncompressed / compressed per member
    max_member_bytes: int = Field(default=4 * GB, ge=0)  # one member spooled for a nested scan
    # pickles
    max_pickle_bytes: int = Field(default=2 * GB, ge=0)  # opcode stream walked per pickle
    max_pickle_opcodes: int = Field(default=50_000_000, ge=1)
    max_pickle_members: int = Field(default=1_000, ge=1)  # pickles inside one torch zip / legacy file
    max_memo_entries: int = Field(default=1_000_000, ge=1)
    # fickling/modelscan hold a whole pickle in memory (several times over); beyond this only ours runs
    max_engine_bytes: int = Field(default=512 * MB, ge=0)
    # headers / small structured files
    max_header_bytes: int = Field(default=100 * MB, ge=0)  # safetensors JSON header, GGUF metadata
    max_json_bytes: int = Field(default=50 * MB, ge=0)  # config.json, tokenizer.json, ...
    max_source_bytes: int = Field(default=10 * MB, ge=0)  # Python source analysed with ast
    max_text_sniff_bytes: int = Field(default=64 * 1024, ge=1)  # bytes read to call something text


DEFAULT_LIMITS = ScanLimits()
