#include "commands.h"

namespace dpgate::app {

int RunLedger(const Args& /*args*/) { return NotYetSupported("ledger", "the ledger (issue 5)"); }

}  // namespace dpgate::app
