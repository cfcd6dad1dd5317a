<?php
throw new Exception("boom here");
