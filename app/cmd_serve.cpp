#include "commands.h"

namespace dpgate::app {

int RunServe(const Args& /*args*/) { return NotYetSupported("serve", "the proxy (issue 6)"); }

}  // namespace dpgate::app
