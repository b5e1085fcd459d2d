from lockenv.cli import main

raise SystemExit(main())
