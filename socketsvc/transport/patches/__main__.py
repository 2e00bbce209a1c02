from socketsvc.transport.patches import main

raise SystemExit(main())
