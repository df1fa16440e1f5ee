#include "commands.h"

namespace dpgate::app {

int RunPasswd(const Args& /*args*/) { return NotYetSupported("passwd", "SCRAM verifiers (issue 6)"); }

}  // namespace dpgate::app
