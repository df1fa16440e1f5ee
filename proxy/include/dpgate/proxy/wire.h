// PostgreSQL frontend/backend protocol v3 codec (PostgreSQL 15 docs, chapter
// 55 "Frontend/Backend Protocol", §55.7 "Message Formats"). Pure: it never
// touches a socket, so every byte path is unit-tested and fuzzed without a
// network (the Envoy postgres_proxy model: frame first, with a hard bound on
// every length, then parse the body with a bounds-checked reader). No
// exceptions on the data path: malformed input is an Error value, and the
// session closes that one connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "dpgate/common/result.h"

namespace dpgate::proxy::wire {

// Protocol constants (§55.7).
inline constexpr int32_t kProtocolV3 = 196608;           // 3.0
inline constexpr int32_t kSslRequestCode = 80877103;     // 1234.5679
inline constexpr int32_t kGssEncRequestCode = 80877104;  // 1234.5680
inline constexpr int32_t kCancelRequestCode = 80877102;  // 1234.5678

struct Limits {
  // A startup packet is small; PostgreSQL itself caps it at 10,000 bytes
  // (MAX_STARTUP_PACKET_LENGTH in pqcomm.h).
  uint32_t max_startup_packet = 10000;
  // Largest regular message accepted from a client. Queries from BI tools can
  // be long, but a hard bound keeps a hostile length field from allocating.
  uint32_t max_message = 4u << 20;
};

// ---- Framing ---------------------------------------------------------------

// One framed message: the type byte (0 for an untyped startup-phase packet)
// and its body (without the type byte and the length word).
struct Frame {
  char type = 0;
  std::string body;
};

// Incremental decoder: append bytes as they arrive, take whole frames out.
// Until `EndStartupPhase()`, frames are untyped (length word first).
class FrameDecoder {
 public:
  explicit FrameDecoder(Limits limits = {}) : limits_(limits) {}

  void Append(std::string_view bytes) { buffer_.append(bytes.data(), bytes.size()); }
  // A whole frame, nothing yet (need more bytes), or an error (the length word
  // is out of bounds: the connection must be closed).
  Result<std::optional<Frame>> Next();
  // The same into `*frame` (true: a frame was taken), reusing its body's
  // storage: a session that keeps one Frame allocates nothing per message.
  Result<bool> Next(Frame* frame);
  void EndStartupPhase() { startup_phase_ = false; }
  bool in_startup_phase() const { return startup_phase_; }
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  Limits limits_;
  bool startup_phase_ = true;
  std::string buffer_;
  size_t consumed_ = 0;
};

// One backend message at the front of a buffer (the upstream's answer that
// dpgate relays, UpstreamConnection::Relay): views into that buffer.
struct BackendMessage {
  char type = 0;
  std::string_view whole;  // type byte, length word and body: what is relayed
  std::string_view body;
};
// The first whole message of `bytes`; nullopt when more bytes are needed
// (then `*whole_size`, when not null, is the whole message's size once its
// length word has arrived, else 0); an error when the length word is below 4
// or the message would exceed `max_message` bytes.
Result<std::optional<BackendMessage>> NextBackendMessage(std::string_view bytes, size_t max_message,
                                                         size_t* whole_size = nullptr);

// ---- Bounds-checked body reader --------------------------------------------

class BodyReader {
 public:
  explicit BodyReader(std::string_view body) : data_(body) {}
  Result<int32_t> Int32();
  Result<int16_t> Int16();
  Result<uint8_t> Byte();
  Result<std::string> CString();           // NUL-terminated
  Result<std::string_view> CStringView();  // the same, a view into the body
  Result<std::string> Bytes(size_t n);
  bool at_end() const { return pos_ == data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

// ---- Frontend messages -----------------------------------------------------

struct StartupMessage {
  int32_t protocol = 0;
  std::vector<std::pair<std::string, std::string>> parameters;
  const std::string* Find(std::string_view name) const;
};
struct SslRequest {};
struct GssEncRequest {};
struct CancelRequest {
  int32_t process_id = 0;
  int32_t secret_key = 0;
};
using StartupPacket = std::variant<StartupMessage, SslRequest, GssEncRequest, CancelRequest>;
Result<StartupPacket> ParseStartupPacket(std::string_view body);

struct SaslInitialResponse {
  std::string mechanism;
  std::string data;  // client-first-message
};
Result<SaslInitialResponse> ParseSaslInitialResponse(std::string_view body);

Result<std::string> ParseQuery(std::string_view body);  // 'Q': the SQL text
// The same as a view into `body`.
Result<std::string_view> ParseQueryText(std::string_view body);

struct ParseMessage {  // 'P'
  std::string statement;
  std::string query;
  std::vector<int32_t> parameter_types;
};
Result<ParseMessage> ParseParse(std::string_view body);

struct BindMessage {  // 'B'
  std::string portal;
  std::string statement;
  std::vector<int16_t> parameter_formats;
  std::vector<std::optional<std::string>> parameters;  // nullopt = SQL NULL
  std::vector<int16_t> result_formats;
};
Result<BindMessage> ParseBind(std::string_view body);

struct DescribeMessage {  // 'D'
  char kind = 'S';        // 'S' statement or 'P' portal
  std::string name;
};
Result<DescribeMessage> ParseDescribe(std::string_view body);

struct ExecuteMessage {  // 'E'
  std::string portal;
  int32_t max_rows = 0;  // 0 = no limit
};
Result<ExecuteMessage> ParseExecute(std::string_view body);

struct CloseMessage {  // 'C'
  char kind = 'S';
  std::string name;
};
Result<CloseMessage> ParseClose(std::string_view body);

// ---- Backend messages ------------------------------------------------------

// Severity and fields of ErrorResponse / NoticeResponse (§55.8).
struct Diagnostic {
  std::string severity = "ERROR";  // ERROR, FATAL, NOTICE, WARNING, ...
  std::string sqlstate = "XX000";
  std::string message;
  std::string detail;
  std::string hint;
  int32_t position = 0;  // 1-based character position in the query, 0 = none
};

// The fields of an ErrorResponse or NoticeResponse body (§55.8) that
// Diagnostic keeps: 'V' (or 'S' when 'V' is absent), 'C', 'M', 'D', 'H' and
// 'P'; the others (context, schema/table/column names, source location) are
// dropped, exactly as dpgate relays a libpq-reported error.
Result<Diagnostic> ParseDiagnostic(std::string_view body);

struct FieldDescription {
  std::string name;
  int32_t table_oid = 0;
  int16_t column_attr = 0;
  int32_t type_oid = 25;  // text
  int16_t type_size = -1;
  int32_t type_modifier = -1;
  int16_t format = 0;  // 0 text, 1 binary
};

// Appends encoded backend messages to an output buffer.
class BackendWriter {
 public:
  const std::string& buffer() const { return out_; }
  std::string Take() { return std::exchange(out_, {}); }
  // Empties the buffer once it has been sent. A small buffer keeps its
  // storage for the next answer (no allocation per statement); a large one
  // is freed so that an idle session does not keep its biggest answer's.
  void Clear() {
    if (out_.capacity() > kRetainedCapacity) {
      std::string().swap(out_);
    } else {
      out_.clear();
    }
  }

  size_t size() const { return out_.size(); }
  // Drops everything after the first `size` bytes (an answer that must not
  // reach the client half-written).
  void Truncate(size_t size) {
    if (size < out_.size()) out_.resize(size);
  }
  // Drops the first `n` bytes (sent already).
  void Consume(size_t n) { out_.erase(0, n); }
  // Appends one whole message as it came from the upstream (type byte,
  // length word and body), already framed and checked by the caller.
  void Relayed(std::string_view message) { out_.append(message.data(), message.size()); }

  void SslResponse(bool accept) { out_ += accept ? 'S' : 'N'; }
  void AuthenticationOk();
  void AuthenticationCleartextPassword();
  void AuthenticationSasl(const std::vector<std::string>& mechanisms);
  void AuthenticationSaslContinue(std::string_view data);
  void AuthenticationSaslFinal(std::string_view data);
  void ParameterStatus(std::string_view name, std::string_view value);
  void BackendKeyData(int32_t process_id, int32_t secret_key);
  void ReadyForQuery(char transaction_status);  // 'I', 'T' or 'E'
  void RowDescription(const std::vector<FieldDescription>& fields);
  void DataRow(const std::vector<std::optional<std::string>>& values);
  void CommandComplete(std::string_view tag);
  void EmptyQueryResponse();
  void ErrorResponse(const Diagnostic& d);
  void NoticeResponse(const Diagnostic& d);
  void ParseComplete();
  void BindComplete();
  void CloseComplete();
  void NoData();
  void PortalSuspended();
  void ParameterDescription(const std::vector<int32_t>& type_oids);

 private:
  void Begin(char type);
  void End();
  void PutInt32(int32_t v);
  void PutInt16(int16_t v);
  void PutCString(std::string_view s);
  void PutDiagnostic(char type, const Diagnostic& d);

  static constexpr size_t kRetainedCapacity = 4096;
  std::string out_;
  size_t frame_start_ = 0;
};

}  // namespace dpgate::proxy::wire
