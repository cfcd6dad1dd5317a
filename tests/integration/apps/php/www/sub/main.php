<?php echo "custom index";
