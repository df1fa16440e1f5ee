#include "dpgate/proxy/wire.h"

#include <cstring>

namespace dpgate::proxy::wire {
namespace {

// SQLSTATE 08P01 protocol_violation: the client sent something that is not
// the protocol. The session answers with FATAL and closes the connection.
Error Violation(std::string message) {
  return MakeError("08P01", std::move(message));
}

uint32_t LoadBigEndian32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

// Every Parse* function reads the whole body: trailing bytes are a violation
// (a message is exactly its declared fields).
Status ExpectEnd(const BodyReader& r, const char* what) {
  if (!r.at_end()) return Violation(std::string("trailing bytes in ") + what + " message");
  return Status::Ok();
}

// Counts come from the wire as int16; a negative count is malformed, and a
// count larger than the bytes left cannot be honest (each entry takes at least
// `min_entry_size` bytes), so it is refused before anything is allocated.
Result<size_t> ReadCount(BodyReader& r, size_t min_entry_size, const char* what) {
  auto n = r.Int16();
  if (!n.ok()) return n.error();
  if (*n < 0) return Violation(std::string("negative count in ") + what);
  if (static_cast<size_t>(*n) * min_entry_size > r.remaining()) {
    return Violation(std::string("count in ") + what + " exceeds the message length");
  }
  return static_cast<size_t>(*n);
}

}  // namespace

// ---- Framing ---------------------------------------------------------------

Result<std::optional<Frame>> FrameDecoder::Next() {
  Frame f;
  auto got = Next(&f);
  if (!got.ok()) return got.error();
  if (!*got) return std::optional<Frame>();
  return std::optional<Frame>(std::move(f));
}

Result<bool> FrameDecoder::Next(Frame* frame) {
  const size_t header = startup_phase_ ? 4 : 5;
  const size_t available = buffer_.size() - consumed_;
  if (available < header) return false;
  const char* p = buffer_.data() + consumed_;
  const char type = startup_phase_ ? 0 : p[0];
  const uint32_t length = LoadBigEndian32(p + (startup_phase_ ? 0 : 1));
  // The length word counts itself; anything below 4 is malformed. Validate
  // before buffering the body so a hostile length cannot make us allocate.
  const uint32_t max = startup_phase_ ? limits_.max_startup_packet : limits_.max_message;
  if (length < 4 || (startup_phase_ && length < 8)) {
    return Violation("invalid message length " + std::to_string(length));
  }
  if (length > max) {
    return Violation("message of " + std::to_string(length) + " bytes exceeds the limit of " +
                     std::to_string(max) + " bytes" +
                     (startup_phase_ ? std::string(" for a startup packet")
                                     : std::string(" (limits.max_message_size in the config)")));
  }
  const size_t total = header - 4 + length;
  if (available < total) return false;
  frame->type = type;
  frame->body.assign(p + header, total - header);
  consumed_ += total;
  if (consumed_ == buffer_.size()) {
    // All taken (the usual case between statements): start again at the
    // front, keeping the storage unless a big message left it large.
    if (buffer_.capacity() > 65536) {
      std::string().swap(buffer_);
    } else {
      buffer_.clear();
    }
    consumed_ = 0;
  } else if (consumed_ > 65536 && consumed_ * 2 > buffer_.size()) {
    // Compact once the consumed prefix dominates, keeping appends amortised O(1).
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return true;
}

// ---- Body reader -----------------------------------------------------------

Result<int32_t> BodyReader::Int32() {
  if (remaining() < 4) return Violation("message too short (int32 expected)");
  const uint32_t v = LoadBigEndian32(data_.data() + pos_);
  pos_ += 4;
  return static_cast<int32_t>(v);
}

Result<int16_t> BodyReader::Int16() {
  if (remaining() < 2) return Violation("message too short (int16 expected)");
  const auto* u = reinterpret_cast<const unsigned char*>(data_.data() + pos_);
  pos_ += 2;
  return static_cast<int16_t>((u[0] << 8) | u[1]);
}

Result<uint8_t> BodyReader::Byte() {
  if (remaining() < 1) return Violation("message too short (byte expected)");
  return static_cast<uint8_t>(data_[pos_++]);
}

Result<std::string> BodyReader::CString() {
  auto s = CStringView();
  if (!s.ok()) return s.error();
  return std::string(*s);
}

Result<std::string_view> BodyReader::CStringView() {
  const size_t nul = data_.find('\0', pos_);
  if (nul == std::string_view::npos) return Violation("unterminated string in message");
  const std::string_view s = data_.substr(pos_, nul - pos_);
  pos_ = nul + 1;
  return s;
}

Result<std::string> BodyReader::Bytes(size_t n) {
  if (remaining() < n) return Violation("message too short for its declared field length");
  std::string s(data_.substr(pos_, n));
  pos_ += n;
  return s;
}

// ---- Frontend messages -----------------------------------------------------

const std::string* StartupMessage::Find(std::string_view name) const {
  for (const auto& [k, v] : parameters) {
    if (k == name) return &v;
  }
  return nullptr;
}

Result<StartupPacket> ParseStartupPacket(std::string_view body) {
  BodyReader r(body);
  auto code = r.Int32();
  if (!code.ok()) return code.error();
  if (*code == kSslRequestCode || *code == kGssEncRequestCode) {
    if (!r.at_end()) return Violation("trailing bytes in SSLRequest/GSSENCRequest");
    if (*code == kSslRequestCode) return StartupPacket(SslRequest{});
    return StartupPacket(GssEncRequest{});
  }
  if (*code == kCancelRequestCode) {
    CancelRequest c;
    auto pid = r.Int32();
    auto key = r.Int32();
    if (!pid.ok() || !key.ok() || !r.at_end()) return Violation("malformed CancelRequest");
    c.process_id = *pid;
    c.secret_key = *key;
    return StartupPacket(c);
  }
  if ((*code >> 16) != 3) {
    return MakeError("0A000", "unsupported frontend protocol " + std::to_string(*code >> 16) + "." +
                                  std::to_string(*code & 0xffff) + ": dpgate speaks protocol 3.0");
  }
  StartupMessage m;
  m.protocol = *code;
  // Name/value pairs, then a final NUL.
  while (true) {
    auto name = r.CString();
    if (!name.ok()) return Violation("malformed startup packet: " + name.error().message);
    if (name->empty()) break;
    auto value = r.CString();
    if (!value.ok()) return Violation("malformed startup packet: " + value.error().message);
    if (m.Find(*name) != nullptr) {
      return Violation("startup parameter \"" + *name + "\" is given twice");
    }
    m.parameters.emplace_back(std::move(*name), std::move(*value));
  }
  if (!r.at_end()) return Violation("trailing bytes after the startup parameters");
  return StartupPacket(std::move(m));
}

Result<SaslInitialResponse> ParseSaslInitialResponse(std::string_view body) {
  BodyReader r(body);
  SaslInitialResponse s;
  auto mech = r.CString();
  if (!mech.ok()) return mech.error();
  s.mechanism = std::move(*mech);
  auto len = r.Int32();
  if (!len.ok()) return len.error();
  if (*len >= 0) {
    auto data = r.Bytes(static_cast<size_t>(*len));
    if (!data.ok()) return data.error();
    s.data = std::move(*data);
  } else if (*len != -1) {
    return Violation("negative length in SASLInitialResponse");
  }
  if (auto st = ExpectEnd(r, "SASLInitialResponse"); !st.ok()) return st.error();
  return s;
}

Result<std::string> ParseQuery(std::string_view body) {
  auto q = ParseQueryText(body);
  if (!q.ok()) return q.error();
  return std::string(*q);
}

Result<std::string_view> ParseQueryText(std::string_view body) {
  BodyReader r(body);
  auto q = r.CStringView();
  if (!q.ok()) return q.error();
  if (auto st = ExpectEnd(r, "Query"); !st.ok()) return st.error();
  return q;
}

Result<ParseMessage> ParseParse(std::string_view body) {
  BodyReader r(body);
  ParseMessage m;
  auto name = r.CString();
  if (!name.ok()) return name.error();
  auto query = r.CString();
  if (!query.ok()) return query.error();
  m.statement = std::move(*name);
  m.query = std::move(*query);
  auto n = ReadCount(r, 4, "Parse parameter types");
  if (!n.ok()) return n.error();
  m.parameter_types.reserve(*n);
  for (size_t i = 0; i < *n; ++i) {
    auto oid = r.Int32();
    if (!oid.ok()) return oid.error();
    m.parameter_types.push_back(*oid);
  }
  if (auto st = ExpectEnd(r, "Parse"); !st.ok()) return st.error();
  return m;
}

Result<BindMessage> ParseBind(std::string_view body) {
  BodyReader r(body);
  BindMessage m;
  auto portal = r.CString();
  if (!portal.ok()) return portal.error();
  auto stmt = r.CString();
  if (!stmt.ok()) return stmt.error();
  m.portal = std::move(*portal);
  m.statement = std::move(*stmt);
  auto nfmt = ReadCount(r, 2, "Bind parameter formats");
  if (!nfmt.ok()) return nfmt.error();
  for (size_t i = 0; i < *nfmt; ++i) {
    auto f = r.Int16();
    if (!f.ok()) return f.error();
    if (*f != 0 && *f != 1) return Violation("invalid parameter format code in Bind");
    m.parameter_formats.push_back(*f);
  }
  auto nparams = ReadCount(r, 4, "Bind parameters");
  if (!nparams.ok()) return nparams.error();
  if (*nfmt > 1 && *nfmt != *nparams) {
    return Violation("Bind has " + std::to_string(*nfmt) + " parameter formats for " +
                     std::to_string(*nparams) + " parameters");
  }
  for (size_t i = 0; i < *nparams; ++i) {
    auto len = r.Int32();
    if (!len.ok()) return len.error();
    if (*len == -1) {
      m.parameters.emplace_back(std::nullopt);
      continue;
    }
    if (*len < 0) return Violation("negative parameter length in Bind");
    auto v = r.Bytes(static_cast<size_t>(*len));
    if (!v.ok()) return v.error();
    m.parameters.emplace_back(std::move(*v));
  }
  auto nres = ReadCount(r, 2, "Bind result formats");
  if (!nres.ok()) return nres.error();
  for (size_t i = 0; i < *nres; ++i) {
    auto f = r.Int16();
    if (!f.ok()) return f.error();
    if (*f != 0 && *f != 1) return Violation("invalid result format code in Bind");
    m.result_formats.push_back(*f);
  }
  if (auto st = ExpectEnd(r, "Bind"); !st.ok()) return st.error();
  return m;
}

namespace {
template <typename T>
Result<T> ParseKindAndName(std::string_view body, const char* what) {
  BodyReader r(body);
  auto kind = r.Byte();
  if (!kind.ok()) return kind.error();
  if (*kind != 'S' && *kind != 'P') {
    return Violation(std::string(what) + " must name a statement ('S') or a portal ('P')");
  }
  auto name = r.CString();
  if (!name.ok()) return name.error();
  if (auto st = ExpectEnd(r, what); !st.ok()) return st.error();
  T m;
  m.kind = static_cast<char>(*kind);
  m.name = std::move(*name);
  return m;
}
}  // namespace

Result<DescribeMessage> ParseDescribe(std::string_view body) {
  return ParseKindAndName<DescribeMessage>(body, "Describe");
}

Result<CloseMessage> ParseClose(std::string_view body) {
  return ParseKindAndName<CloseMessage>(body, "Close");
}

Result<ExecuteMessage> ParseExecute(std::string_view body) {
  BodyReader r(body);
  ExecuteMessage m;
  auto portal = r.CString();
  if (!portal.ok()) return portal.error();
  auto rows = r.Int32();
  if (!rows.ok()) return rows.error();
  if (*rows < 0) return Violation("negative row limit in Execute");
  m.portal = std::move(*portal);
  m.max_rows = *rows;
  if (auto st = ExpectEnd(r, "Execute"); !st.ok()) return st.error();
  return m;
}

// ---- Backend messages ------------------------------------------------------

void BackendWriter::Begin(char type) {
  out_ += type;
  frame_start_ = out_.size();
  out_.append(4, '\0');  // length, patched by End()
}

void BackendWriter::End() {
  const auto len = static_cast<uint32_t>(out_.size() - frame_start_);
  out_[frame_start_] = static_cast<char>(len >> 24);
  out_[frame_start_ + 1] = static_cast<char>(len >> 16);
  out_[frame_start_ + 2] = static_cast<char>(len >> 8);
  out_[frame_start_ + 3] = static_cast<char>(len);
}

void BackendWriter::PutInt32(int32_t v) {
  const auto u = static_cast<uint32_t>(v);
  out_ += static_cast<char>(u >> 24);
  out_ += static_cast<char>(u >> 16);
  out_ += static_cast<char>(u >> 8);
  out_ += static_cast<char>(u);
}

void BackendWriter::PutInt16(int16_t v) {
  const auto u = static_cast<uint16_t>(v);
  out_ += static_cast<char>(u >> 8);
  out_ += static_cast<char>(u);
}

void BackendWriter::PutCString(std::string_view s) {
  // A NUL inside a C string would truncate it at the client and shift every
  // following field; cut at the first NUL instead.
  out_.append(s.substr(0, s.find('\0')));
  out_ += '\0';
}

void BackendWriter::AuthenticationOk() {
  Begin('R');
  PutInt32(0);
  End();
}

void BackendWriter::AuthenticationCleartextPassword() {
  Begin('R');
  PutInt32(3);
  End();
}

void BackendWriter::AuthenticationSasl(const std::vector<std::string>& mechanisms) {
  Begin('R');
  PutInt32(10);
  for (const auto& m : mechanisms) PutCString(m);
  out_ += '\0';
  End();
}

void BackendWriter::AuthenticationSaslContinue(std::string_view data) {
  Begin('R');
  PutInt32(11);
  out_.append(data);
  End();
}

void BackendWriter::AuthenticationSaslFinal(std::string_view data) {
  Begin('R');
  PutInt32(12);
  out_.append(data);
  End();
}

void BackendWriter::ParameterStatus(std::string_view name, std::string_view value) {
  Begin('S');
  PutCString(name);
  PutCString(value);
  End();
}

void BackendWriter::BackendKeyData(int32_t process_id, int32_t secret_key) {
  Begin('K');
  PutInt32(process_id);
  PutInt32(secret_key);
  End();
}

void BackendWriter::ReadyForQuery(char transaction_status) {
  Begin('Z');
  out_ += transaction_status;
  End();
}

void BackendWriter::RowDescription(const std::vector<FieldDescription>& fields) {
  Begin('T');
  PutInt16(static_cast<int16_t>(fields.size()));
  for (const auto& f : fields) {
    PutCString(f.name);
    PutInt32(f.table_oid);
    PutInt16(f.column_attr);
    PutInt32(f.type_oid);
    PutInt16(f.type_size);
    PutInt32(f.type_modifier);
    PutInt16(f.format);
  }
  End();
}

void BackendWriter::DataRow(const std::vector<std::optional<std::string>>& values) {
  Begin('D');
  PutInt16(static_cast<int16_t>(values.size()));
  for (const auto& v : values) {
    if (!v.has_value()) {
      PutInt32(-1);
      continue;
    }
    PutInt32(static_cast<int32_t>(v->size()));
    out_.append(*v);
  }
  End();
}

void BackendWriter::CommandComplete(std::string_view tag) {
  Begin('C');
  PutCString(tag);
  End();
}

void BackendWriter::EmptyQueryResponse() {
  Begin('I');
  End();
}

void BackendWriter::PutDiagnostic(char type, const Diagnostic& d) {
  Begin(type);
  // 'S' localized severity and 'V' non-localized severity (PostgreSQL >= 9.6).
  out_ += 'S';
  PutCString(d.severity);
  out_ += 'V';
  PutCString(d.severity);
  out_ += 'C';
  PutCString(d.sqlstate);
  out_ += 'M';
  PutCString(d.message);
  if (!d.detail.empty()) {
    out_ += 'D';
    PutCString(d.detail);
  }
  if (!d.hint.empty()) {
    out_ += 'H';
    PutCString(d.hint);
  }
  if (d.position > 0) {
    out_ += 'P';
    PutCString(std::to_string(d.position));
  }
  out_ += '\0';
  End();
}

Result<std::optional<BackendMessage>> NextBackendMessage(std::string_view bytes, size_t max_message,
                                                         size_t* whole_size) {
  if (whole_size != nullptr) *whole_size = 0;
  if (bytes.size() < 5) return std::optional<BackendMessage>();
  const auto* head = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t declared =
      (size_t{head[1]} << 24) | (size_t{head[2]} << 16) | (size_t{head[3]} << 8) | size_t{head[4]};
  const size_t whole = 1 + declared;
  // The length word counts itself (§55.7).
  if (declared < 4 || whole > max_message) {
    return Violation("backend message length " + std::to_string(declared) + " out of bounds");
  }
  if (whole_size != nullptr) *whole_size = whole;
  if (bytes.size() < whole) return std::optional<BackendMessage>();
  BackendMessage m;
  m.type = bytes[0];
  m.whole = bytes.substr(0, whole);
  m.body = bytes.substr(5, declared - 4);
  return std::optional<BackendMessage>(m);
}

Result<Diagnostic> ParseDiagnostic(std::string_view body) {
  Diagnostic d;
  d.severity.clear();
  d.sqlstate.clear();
  std::string localized_severity;
  BodyReader r(body);
  while (true) {
    auto code = r.Byte();
    if (!code.ok()) return code.error();
    if (*code == 0) break;
    auto value = r.CString();
    if (!value.ok()) return value.error();
    switch (*code) {
      case 'V':
        d.severity = std::move(*value);
        break;
      case 'S':
        localized_severity = std::move(*value);
        break;
      case 'C':
        d.sqlstate = std::move(*value);
        break;
      case 'M':
        d.message = std::move(*value);
        break;
      case 'D':
        d.detail = std::move(*value);
        break;
      case 'H':
        d.hint = std::move(*value);
        break;
      case 'P': {
        int32_t position = 0;
        for (char c : *value) {
          if (c < '0' || c > '9' || position > 100000000) {
            position = 0;
            break;
          }
          position = position * 10 + (c - '0');
        }
        d.position = position;
        break;
      }
      default:
        break;  // fields Diagnostic does not carry
    }
  }
  if (!r.at_end()) return Violation("bytes after the end of an error or notice message");
  if (d.severity.empty()) d.severity = localized_severity;
  if (d.severity.empty()) d.severity = "ERROR";
  if (d.sqlstate.empty()) d.sqlstate = "XX000";
  return d;
}

void BackendWriter::ErrorResponse(const Diagnostic& d) {
  PutDiagnostic('E', d);
}
void BackendWriter::NoticeResponse(const Diagnostic& d) {
  PutDiagnostic('N', d);
}

void BackendWriter::ParseComplete() {
  Begin('1');
  End();
}
void BackendWriter::BindComplete() {
  Begin('2');
  End();
}
void BackendWriter::CloseComplete() {
  Begin('3');
  End();
}
void BackendWriter::NoData() {
  Begin('n');
  End();
}
void BackendWriter::PortalSuspended() {
  Begin('s');
  End();
}

void BackendWriter::ParameterDescription(const std::vector<int32_t>& type_oids) {
  Begin('t');
  PutInt16(static_cast<int16_t>(type_oids.size()));
  for (int32_t oid : type_oids) PutInt32(oid);
  End();
}

}  // namespace dpgate::proxy::wire
