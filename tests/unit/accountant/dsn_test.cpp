// DSNs are redacted before they appear in any message.
#include <catch2/catch.hpp>

#include "dpgate/accountant/ledger.h"

TEST_CASE("RedactDsn hides passwords in both DSN forms") {
  using dpgate::accountant::RedactDsn;
  CHECK(RedactDsn("host=h password=abc dbname=x") == "host=h password=*** dbname=x");
  CHECK(RedactDsn("host=h password = 'a b\\'c' dbname=x") == "host=h password = *** dbname=x");
  CHECK(RedactDsn("postgresql://u:abc@h:5432/db") == "postgresql://u:***@h:5432/db");
  CHECK(RedactDsn("postgresql://u@h/db?password=abc&sslmode=require") ==
        "postgresql://u@h/db?password=***&sslmode=require");
}
