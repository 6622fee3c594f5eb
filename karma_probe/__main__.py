from karma_probe.cli import main

raise SystemExit(main())
