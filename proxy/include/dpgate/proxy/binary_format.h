// Binary result format for the extended protocol (PostgreSQL 15 docs §55.2.3
// "formats and format codes"; the per-type layouts are those of each type's
// *send* function in the PostgreSQL sources, e.g. int4send, numeric_send,
// timestamp_send). dpgate reads upstream rows in text format, because libpq
// asks for one format for all columns while a client (JDBC after its
// prepare threshold) asks per column; the columns a client wants in binary
// are converted here. A value this module cannot convert exactly is an error,
// never an approximation: the caller tells the client to ask for text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dpgate/common/result.h"

namespace dpgate::proxy {

// True when TextToBinary knows the type's binary layout.
bool HasBinaryConversion(int32_t type_oid);

// The binary encoding of `text`, the type's text output with the session's
// DateStyle = ISO (what PostgreSQL itself sends in the text format). Errors
// (code 0A000) for an unknown type or a text this module does not parse.
Result<std::string> TextToBinary(int32_t type_oid, std::string_view text);

}  // namespace dpgate::proxy
