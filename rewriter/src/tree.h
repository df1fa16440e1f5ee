// Internal: parse, deparse, build and compare libpg_query protobuf parse-tree
// nodes. Included only by rewriter .cpp files (pg_query.pb.h never leaks into
// a public header). New SQL is always built as tree nodes, never as text.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dpgate/common/result.h"
#include "pg_query.pb.h"

namespace dpgate::rewriter::internal {

namespace pb = pg_query;

// A refusal found while walking the tree: SQLSTATE, message, and the byte
// offset into the original query string (-1 if unknown).
struct Refusal {
  std::string code;
  std::string message;
  int location = -1;
};

// Parses `sql` (no NUL bytes). On a syntax error: 42601 with line:column.
Result<pb::ParseResult> Parse(const std::string& sql);

// Deparses one statement; Error only if libpg_query cannot deparse our tree.
// Takes the tree by value: callers move it in, as copying a rewritten tree
// cost more than its serialisation.
Result<std::string> Deparse(pb::Node stmt, int32_t version);

// "line L, column C" of a byte offset into `sql` (columns count characters).
std::string Position(std::string_view sql, int location);

// The message-typed fields a walk over `message`'s children must look at, in
// field order. For a pb::Node (a oneof of ~240 message fields, at most one
// set) only the set member: asking HasField of every member made the
// reflective walks the largest cost of a rewrite (bench/RESULTS.md
// "rewriter"). `message` must be a pg_query.proto message.
std::span<const google::protobuf::FieldDescriptor* const> ChildFields(
    const google::protobuf::Message& message);

// Calls `visit` on each direct child message of `message` (every set
// singular and every repeated message field, in field order) until it
// returns true; true when one did. The one walk over a parse tree's children
// that the read-only analyses share.
bool AnyChild(const google::protobuf::Message& message,
              const std::function<bool(const google::protobuf::Message&)>& visit);
// The same walk for the rewrites that change a tree in place.
bool AnyMutableChild(google::protobuf::Message* message,
                     const std::function<bool(google::protobuf::Message*)>& visit);

// `name` as a delimited identifier: always double-quoted, embedded quotes
// doubled (PostgreSQL's lexical rule, SQL syntax §4.1.1).
std::string DelimitedIdentifier(const std::string& name);

// ASCII lower case, as PostgreSQL folds unquoted identifiers.
std::string Lower(std::string text);

// Builders. Each returns a fresh node; callers move them into place.
pb::Node MakeColumnRef(const std::vector<std::string>& names);
pb::Node MakeStar();
pb::Node MakeInteger(int64_t value);
pb::Node MakeNumeric(double value);  // a numeric literal (always has a '.' or exponent)
pb::Node MakeString(const std::string& value);
pb::Node MakeNull();
pb::Node MakeFunc(const std::vector<std::string>& name, std::vector<pb::Node> args);
pb::Node MakeCountStar();
pb::Node MakeMinMax(pb::MinMaxOp op, std::vector<pb::Node> args);
pb::Node MakeOp(const std::string& op, pb::Node left, pb::Node right);
pb::Node MakeAnd(std::vector<pb::Node> args);
pb::Node MakeNullTest(pb::Node arg, bool is_null);
pb::Node MakeCaseWhen(pb::Node condition, pb::Node then_value, pb::Node else_value);
pb::Node MakeResTarget(const std::string& name, pb::Node value);
pb::Node MakeInList(pb::Node left, const std::vector<std::string>& values);
// least(greatest(x, lo), hi)
pb::Node MakeClamp(pb::Node x, double lo, double hi);
// (value)::type, type a qualified name ({"pg_catalog", "int8"}); `array`
// makes it type[].
pb::Node MakeCast(pb::Node value, const std::vector<std::string>& type, bool array = false);
// (x)::pg_catalog.text COLLATE pg_catalog."C": a value's text form compared
// byte for byte, whatever the type's own equality or the column's collation.
pb::Node MakeTextKey(pb::Node x);

// The name PostgreSQL gives an output column without AS (FigureColname).
std::string DerivedColumnName(const pb::Node& value);

// Structural equality ignoring `location` fields.
bool SameTree(const pb::Node& a, const pb::Node& b);

// Clears every `location` field, recursively, so trees compare by shape.
void ClearLocations(google::protobuf::Message* message);

// Structural equality of two trees whose locations ClearLocations has
// already cleared: SameTree without its two copies, for trees compared often.
bool SameClearedTree(const pb::Node& a, const pb::Node& b);

// Lower-cased last element of a FuncCall's name; `schema` gets the qualifier.
std::string FunctionName(const pb::FuncCall& call, std::string* schema = nullptr);

// Formats a double as the shortest text that reads back exactly.
std::string FormatNumber(double value);

}  // namespace dpgate::rewriter::internal
