"""`python -m proxy` is the `hubgate` command."""

from proxy.cli import main

raise SystemExit(main())
