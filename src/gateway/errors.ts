// Errors the user can cause, with the exit status the CLI gives each, and vipnat's exit statuses.

/** An error the user can fix; the CLI prints its message on one line and exits with `exitCode`. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/** Exit status for bad flags, pools and other input. */
export const EXIT_USAGE = 2;
/** Exit status when every program succeeded but some sessions got no VIP. */
export const EXIT_NO_VIP = 3;
/** Exit status when PROGRAM exists but cannot be executed (as a shell reports it). */
export const EXIT_NOT_EXECUTABLE = 126;
/** Exit status when PROGRAM is not found. */
export const EXIT_NOT_FOUND = 127;

/** No such session (HTTP 404 on the control socket). */
export class NotFoundError extends UserError {
  constructor(message: string) {
    super(message, 1);
    this.name = 'NotFoundError';
  }
}

/** Something is taken already: a session id, a VIP, a gateway name (HTTP 409 on the control socket). */
export class ConflictError extends UserError {
  constructor(message: string) {
    super(message, 1);
    this.name = 'ConflictError';
  }
}
